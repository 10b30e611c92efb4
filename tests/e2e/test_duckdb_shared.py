"""A DuckDB file shared with other processes while a run waits for its jobs (warehouse/duckdb_file.py).

A run lets go of the file while it waits for the API: a real ``dbt build`` writes the same file meanwhile, and
the run merges afterwards. When the run needs the file while another process holds it, it waits up to the
profile's ``lock_wait_seconds`` and goes on when the file is free, or stops saying who holds it; the ledger
keeps the submitted job and a later run finishes it without paying again.

Set ``SIXTYFOUR_SYNC_E2E_TRANSCRIPT`` to a file path to keep the dbt test's interleaved, timestamped output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.test_dbt import DBT, FIXTURE, _require_dbt
from tests.e2e.warehouses import make_duckdb, setup_leads

pytestmark = pytest.mark.slow

#: A job slower than the test: it ends when the test completes it.
JOB_SECONDS = 600.0


class Transcript:
    """The output of several processes, line by line, with the time each line arrived."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []

    def note(self, who: str, text: str) -> None:
        with self._lock:
            self.lines.append((time.monotonic() - self.started, who, text))

    def follow(self, who: str, proc: subprocess.Popen[str]) -> None:
        """Read the process's stdout and stderr into the transcript until they close."""
        for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
            assert stream is not None

            def read(stream: object = stream, tag: str = f"{who} {name}") -> None:
                for line in stream:  # type: ignore[attr-defined]
                    self.note(tag, line.rstrip("\n"))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            self._readers.append(reader)

    def joined(self) -> None:
        for reader in self._readers:
            reader.join(30)

    def text(self, who: str | None = None) -> str:
        with self._lock:
            return "\n".join(line for _, tag, line in self.lines if who is None or tag.startswith(who))

    def wait_for(self, cond: Callable[[], bool], seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while not cond():
            assert time.monotonic() < deadline, f"timed out; so far:\n{self.text()}"
            time.sleep(0.05)

    def save(self, path: Path) -> None:
        with self._lock:
            rows = [f"{t:8.2f}s  {tag:<8}  {line}" for t, tag, line in self.lines]
        path.write_text("\n".join(rows) + "\n")


def _env(project: E2EProject, url: str) -> dict[str, str]:
    env = {**os.environ, **project.env, "SIXTYFOUR_API_URL": url}
    env.pop("SIXTYFOUR_SYNC_FAILPOINT", None)
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1", NO_COLOR="1")
    return env


def _start_run(project: E2EProject, project_dir: Path, url: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project_dir), "run", "--yes"]
    return subprocess.Popen(cmd, env=_env(project, url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_dbt(project: E2EProject, project_dir: Path, url: str) -> subprocess.Popen[str]:
    cmd = [str(DBT), "build", "--no-use-colors", "--profiles-dir", str(project_dir), "--project-dir", str(project_dir)]
    return subprocess.Popen(
        cmd, env=_env(project, url), cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _slow_emulator(api_key: str) -> Emulator:
    return Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=JOB_SECONDS, failure_rate=0.0))


def _accepted(emu: Emulator) -> list[str]:
    return [job.task_id for job in emu.jobs.values()]


@contextmanager
def holding(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file open for writing until the block ends (or it is told to let go)."""
    code = f"import duckdb, sys\ncon = duckdb.connect({str(db)!r})\nprint('ready', flush=True)\nsys.stdin.read()\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        assert holder.stdin is not None
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=30)


def _counts(db: Path, *queries: str) -> list[int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [int(con.execute(q).fetchall()[0][0]) for q in queries]
    finally:
        con.close()


# -------------------------------------------------------------------------------------------- dbt meanwhile


def test_dbt_builds_the_file_while_the_run_waits_for_its_job(project: E2EProject, tmp_path: Path, api_key: str) -> None:
    _require_dbt()
    d = tmp_path / "dbt_project"
    shutil.copytree(FIXTURE, d)
    (d / "profiles.yml").write_text(
        "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        "      schema: main\n"
    )
    log = Transcript()
    slow = _slow_emulator(api_key)
    with slow.serve() as server:
        first = _start_dbt(project, d, server.url)  # the models the sync reads
        log.note("test", "dbt build (the models the sync reads)")
        log.follow("dbt", first)
        assert first.wait(timeout=300) == 0, log.text()
        log.joined()

        run = _start_run(project, d, server.url)
        log.note("test", f"sixtyfour-sync run started (PID {run.pid})")
        log.follow("run", run)
        try:
            log.wait_for(lambda: bool(_accepted(slow)) and "as task" in log.text("run"))  # the answer recorded
            (task,) = _accepted(slow)
            log.note("test", f"the run waits for its job ({task}, up to {JOB_SECONDS:.0f}s); dbt build again")
            dbt = _start_dbt(project, d, server.url)
            log.follow("dbt", dbt)
            assert dbt.wait(timeout=300) == 0, log.text()
            log.note("test", f"dbt build exited 0; the job is still {slow.jobs[task].status}")
            assert slow.jobs[task].status == "running" and run.poll() is None  # dbt wrote while the run waited
            slow.complete(task)
            log.note("test", "the test completes the job")
            assert run.wait(timeout=120) == 0, log.text()
        finally:
            if run.poll() is None:
                run.kill()
        log.joined()
        log.note("test", f"sixtyfour-sync run exited {run.returncode}")
    saved = os.environ.get("SIXTYFOUR_SYNC_E2E_TRANSCRIPT")
    if saved:
        log.save(Path(saved))
    assert "Completed successfully" in log.text("dbt")
    staged, enriched = _counts(d / "wh.duckdb", "SELECT count(*) FROM stg_leads", "SELECT count(*) FROM leads_enriched")
    assert staged == 27 and enriched == staged  # every row merged after dbt's build
    assert len(slow.submissions) == 1


# -------------------------------------------------------------------------------------------- a holder


def _run_until_waiting(
    project: E2EProject, slow: Emulator, url: str, log: Transcript
) -> tuple[subprocess.Popen[str], str]:
    run = _start_run(project, project.dir, url)
    log.follow("run", run)
    log.wait_for(lambda: bool(_accepted(slow)) and "as task" in log.text("run"))  # the answer recorded
    time.sleep(0.2)  # the run waits for the job
    return run, _accepted(slow)[0]


def test_a_run_waits_for_the_process_holding_the_file_then_merges(project: E2EProject, api_key: str) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 20)
    slow = _slow_emulator(api_key)
    log = Transcript()
    with slow.serve() as server:
        run, task = _run_until_waiting(project, slow, server.url, log)
        try:
            assert wh.path is not None
            with holding(wh.path) as holder:  # it gets the file: the run let go while it waits
                slow.complete(task)
                log.wait_for(lambda: f"(PID {holder.pid}); waiting up to 600s" in log.text())
                time.sleep(1.0)
                assert run.poll() is None  # still waiting for the file
            assert run.wait(timeout=120) == 0, log.text()
        finally:
            if run.poll() is None:
                run.kill()
    assert wh.query("SELECT count(*) FROM {t:leads_enriched}")[0][0] == 20
    assert [r[0] for r in wh.jobs()] == ["merged"]


def test_a_holder_past_the_wait_stops_the_run_naming_it_and_the_next_run_finishes_the_job(
    project: E2EProject, api_key: str
) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 20)
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        "      lock_wait_seconds: 3\n"
    )
    slow = _slow_emulator(api_key)
    log = Transcript()
    with slow.serve() as server:
        run, task = _run_until_waiting(project, slow, server.url, log)
        try:
            assert wh.path is not None
            with holding(wh.path) as holder:
                slow.complete(task)  # paid: the run needs the file to merge it
                started = time.monotonic()
                code = run.wait(timeout=120)
                log.joined()
                assert code == 1, log.text()
                assert time.monotonic() - started < 60  # the wait, then a short exit (no full wait per write)
                said = log.text()
                assert f"(PID {holder.pid}) and was not let go within 3s (lock_wait_seconds)" in said, said
        finally:
            if run.poll() is None:
                run.kill()
        # nothing lost: the ledger still has the job in flight (its charge not yet recorded)
        assert [(r[0], r[1]) for r in wh.jobs()] == [("submitted", task)]
        again = _start_run(project, project.dir, server.url)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, out + err
    assert len(slow.submissions) == 1 and len(slow.jobs) == 1  # not sent again: nothing paid twice
    assert wh.query("SELECT count(*) FROM {t:leads_enriched}")[0][0] == 20
    ((state, _, _, _, charged, _),) = wh.jobs()
    assert state == "merged" and charged == slow.jobs[task].charge_cents
    assert wh.charged_in_ledger() == slow.jobs[task].charge_cents
