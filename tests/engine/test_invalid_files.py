"""A project with a broken sync file: the file is set aside whole, the other files' syncs are sound."""

from __future__ import annotations

from pathlib import Path

import pytest

from sixtyfour_sync.engine.invalid_files import invalid_files, sound_syncs
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.errors import ConfigError, ConfigProblem

GOOD = """\
syncs:
  - name: {name}
    endpoint: people
    source: {{table: leads, key: lead_id}}
    struct: {{email: The email}}
    target: {{table: {table}}}
"""


def test_a_file_with_any_problem_is_left_out_whole(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.yml").write_text(GOOD.format(name="good", table="t1"))
    (models / "typo.yml").write_text("syncs:\n  - name: bad\n    source: {table: leads, key: lead_id\n")
    # a sound sync beside one with a schema error: the file is set aside whole
    (models / "mixed.yml").write_text(GOOD.format(name="sound", table="t2") + "  - name: wrong\n    endpoint: peeple\n")
    (models / "dup.yml").write_text(GOOD.format(name="good", table="t3"))  # a name a.yml already uses
    project = Project.load(tmp_path, lenient=True)
    broken = invalid_files(project.problems)
    assert set(broken) == {(models / n).resolve() for n in ("typo.yml", "mixed.yml", "dup.yml")}
    assert "invalid YAML" in str(broken[(models / "typo.yml").resolve()][0])
    assert any("duplicate sync name 'good'" in str(p) for p in broken[(models / "dup.yml").resolve()])
    kept = sound_syncs(project.syncs, project.problems)
    assert [(s.spec.name, s.file.name) for s in kept] == [("good", "a.yml")]
    with pytest.raises(ConfigError):  # a strict load still refuses the project
        Project.load(tmp_path)


def test_a_problem_of_no_file_raises() -> None:
    with pytest.raises(ConfigError, match="no file here"):
        invalid_files([ConfigProblem(None, None, "no file here")])
    assert invalid_files([]) == {}
