"""The built wheel holds every file the package reads at run time, and the code finds them there.

The tests otherwise run against the repository (an editable install), where every file is at hand: a data
file the wheel leaves out (the JSON schema, the demo's models, ``py.typed``) would pass them and break every
``pip install``. So the wheel is built here as a release builds it (hatchling: an sdist first, then the
wheel from the unpacked sdist), and checked:

- every file of the package that git tracks (modules and data alike) is in it, so a new data file cannot be
  forgotten, and so is ``py.typed``;
- the files the code opens at run time (:data:`RUNTIME_DATA`) are among them;
- a child process that imports the package from the unpacked wheel alone reads the schema, writes the demo
  project from the packaged models and answers ``--version`` with the wheel's version.

The build needs the build backend (hatchling, in the test extra). Without it the test skips with the reason;
under CI=true it fails instead.
"""

from __future__ import annotations

import email.parser
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from sixtyfour_sync import __version__
from tests.services import IN_CI

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sixtyfour_sync"

#: The package data the code opens at run time, and what opens each.
RUNTIME_DATA = {
    "sixtyfour_sync/config/sync.schema.json": "config/reference.py shipped_schema() (`sixtyfour-sync schema`)",
    "sixtyfour_sync/examples/models/enrich_leads.yml": "demo.py write_project() (`sixtyfour-sync demo`)",
    "sixtyfour_sync/examples/models/enrich_companies.yml": "demo.py write_project() (`sixtyfour-sync demo`)",
    "sixtyfour_sync/py.typed": "the type checkers of the package's users (PEP 561)",
}

BUILD = textwrap.dedent(
    """
    import os, sys, tarfile
    from hatchling.build import build_sdist, build_wheel

    out, unpacked = sys.argv[1], sys.argv[2]
    sdist = os.path.join(out, build_sdist(out))
    with tarfile.open(sdist) as tar:
        # the "data" filter where this Python has it (3.10.12+, 3.11.4+)
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (top,) = os.listdir(unpacked)
    os.chdir(os.path.join(unpacked, top))
    print(sdist)
    print(os.path.join(out, build_wheel(out)))
    """
)

#: Run from the unpacked wheel only: the code reads its data through the same calls the commands use.
USE = textwrap.dedent(
    """
    import json, sys
    from importlib import resources
    from pathlib import Path

    import sixtyfour_sync
    from sixtyfour_sync.config.reference import shipped_schema
    from sixtyfour_sync.demo import write_project

    project = Path(sys.argv[1])
    write_project(project, leads=20, companies=5)
    print(json.dumps({
        "file": sixtyfour_sync.__file__,
        "version": sixtyfour_sync.__version__,
        "schema_id": json.loads(shipped_schema())["$id"],
        "demo_models": sorted(p.name for p in (project / "models").iterdir()),
        "typed": resources.files("sixtyfour_sync").joinpath("py.typed").is_file(),
    }))
    """
)


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    names: frozenset[str]


def tracked_package_files() -> set[str]:
    """The package's files as git tracks them (from the file tree when this is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", PACKAGE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        files = {f for f in out.split("\0") if f}
    except (OSError, subprocess.CalledProcessError):
        files = set()
    if not files:
        files = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / PACKAGE).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
        }
    return files | {f"{PACKAGE}/py.typed"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if importlib.util.find_spec("hatchling") is None:
        reason = "hatchling (the build backend, in the test extra) is not installed: cannot build the wheel"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("build")
    (work / "dist").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(work / "dist"), str(work / "sdist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sdist, wheel = (Path(line) for line in done.stdout.split())
    with zipfile.ZipFile(wheel) as zf:
        names = frozenset(zf.namelist())
    return Built(sdist, wheel, names)


def test_the_wheel_holds_every_tracked_package_file(built: Built) -> None:
    missing = sorted(tracked_package_files() - built.names)
    assert not missing, f"{built.wheel.name} lacks {missing}"


def test_the_files_the_code_reads_at_run_time_are_shipped(built: Built) -> None:
    tracked = tracked_package_files()
    assert not [f for f in RUNTIME_DATA if f not in tracked], "RUNTIME_DATA names a file the package does not have"
    missing = {f: why for f, why in RUNTIME_DATA.items() if f not in built.names}
    assert not missing, f"{built.wheel.name} lacks files read at run time: {missing}"


def test_the_wheel_holds_the_package_and_its_metadata_only(built: Built) -> None:
    dist_info = f"{PACKAGE}-{__version__}.dist-info/"
    strays = sorted(n for n in built.names if not n.startswith((f"{PACKAGE}/", dist_info)))
    assert not strays, f"files outside the package: {strays}"
    assert f"{dist_info}licenses/LICENSE" in built.names
    with zipfile.ZipFile(built.wheel) as zf:
        meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}METADATA").decode())
        entry_points = zf.read(f"{dist_info}entry_points.txt").decode()
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert "sixtyfour-sync = sixtyfour_sync.cli:main" in entry_points
    with tarfile.open(built.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        assert f"{top}/LICENSE" in tar.getnames()


def test_the_code_finds_its_data_in_the_installed_wheel(built: Built, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(built.wheel) as zf:
        zf.extractall(site)
    # the unpacked wheel is the only copy of the package the child can import (no repository, no editable path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    used = subprocess.run(
        [sys.executable, "-c", USE, str(tmp_path / "demo")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert used.returncode == 0, used.stderr[-3000:]
    seen = json.loads(used.stdout.splitlines()[-1])
    assert Path(seen["file"]).resolve().is_relative_to(site.resolve()), seen["file"]
    assert seen["version"] == __version__
    assert seen["schema_id"].endswith("/sixtyfour_sync/config/sync.schema.json")
    packaged_models = sorted(
        Path(f).name for f in tracked_package_files() if f.startswith(f"{PACKAGE}/examples/models/")
    )
    assert seen["demo_models"] == packaged_models
    assert seen["typed"] is True
    version = subprocess.run(
        [sys.executable, "-m", PACKAGE, "--version"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"sixtyfour-sync, version {__version__}"
