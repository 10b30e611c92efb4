"""Resumes that lose their local files, results that cannot be read, results that lack a column.

Case 4: a job left ``written`` or ``submitting`` whose file is gone (a crash, then a resume on another machine or
with a cleaned work dir) is rebuilt from the warehouse by its row keys and resent with its stored key: never
abandoned, never bought again, also when the API has forgotten its Idempotency-Keys.
Case 5: one unparsable result (garbage, a NUL byte) is held as ``result_unreadable`` with a sanitised error; the
other paid jobs still merge, on PostgreSQL too, and nothing duplicates on rerun.
Case 12: a result that lacks a struct column is reported as incomplete, and the next run asks those fields again.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import threading
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture(params=[False, True], ids=["keys-kept", "keys-forgotten"])
def forget(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def emulator_settings(api_key: str, forget: bool) -> EmulatorSettings:
    ttl = 0 if forget else 86_400
    return EmulatorSettings(
        api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.1, seed=3, idempotency_ttl_seconds=ttl
    )


def _run(project: E2EProject, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)


def _paid_per_file(emu: Emulator) -> collections.Counter[str]:
    """Accepted submissions that started a job, per file content."""
    return collections.Counter(s.file_sha256 for s in emu.submissions if s.status_code == 200 and not s.replay)


class _OnSubmit(api.Reporter):
    def __init__(self, action: Any, nth: int = 1) -> None:
        self.action, self.nth, self.seen, self.lock = action, nth, 0, threading.Lock()

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            with self.lock:
                self.seen += 1
                if self.seen == self.nth:
                    self.action(data["task_id"])


# ------------------------------------------------------------------ case 4: lost work directory


#: CI runs two of the four (point, reask) pairs; SIXTYFOUR_SYNC_FULL_MATRIX=1 runs all of them.
_GONE = [("written", "new"), ("submitting", "new"), ("written", "full_refresh"), ("submitting", "full_refresh")]
if os.environ.get("SIXTYFOUR_SYNC_FULL_MATRIX", "") in ("", "0"):
    _GONE = [("written", "new"), ("submitting", "full_refresh")]


@pytest.mark.parametrize(("point", "reask"), _GONE)
def test_a_file_gone_before_it_was_sent_is_rebuilt_and_sent_with_its_key(
    project: E2EProject, wh: Warehouse, point: str, reask: str
) -> None:
    setup_leads(wh, 60)
    project.write_model(chunk_rows=20)
    args = ["run", "--yes"]
    if reask == "full_refresh":  # a deliberate re-ask: its keys are salted with the crashed run's id
        assert _run(project).exit_code == 0
        args.append("--full-refresh")
    before = _paid_per_file(project.emulator)
    crashed = run_cli(project, *args, failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    stranded = [r for r in wh.jobs("state, idempotency_key") if r[0] in ("written", "submitting")]
    assert stranded
    shutil.rmtree(project.dir / ".sixtyfour")  # a cleaned work dir, or another machine
    resumed = run_cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    jobs = wh.jobs("state, idempotency_key")
    assert "abandoned" not in [r[0] for r in jobs]
    assert {r[0] for r in jobs} == {"merged"}
    # the stranded jobs went out under the keys stored before the crash
    sent_keys = {s.idempotency_key for s in project.emulator.submissions if s.status_code == 200}
    assert {k for _, k in stranded} <= sent_keys
    paid = _paid_per_file(project.emulator) - before
    assert set(paid.values()) == {1}  # each file of this run paid once
    assert len(wh.target()) == 60


def test_a_file_gone_after_it_was_sent_merges_with_what_was_sent(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 40)
    project.write_model(chunk_rows=20)
    crashed = run_cli(project, "run", "--yes", failpoint="completed")
    assert crashed.returncode == -signal.SIGKILL
    shutil.rmtree(project.dir / ".sixtyfour")
    resumed = run_cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "not known here" not in resumed.stdout  # the ledger's row keys told what was sent
    assert set(_paid_per_file(project.emulator).values()) == {1}
    target = wh.target()
    assert len(target) == 40 and all(r[7] for r in target)  # every row has its sent input hash
    assert _run(project).syncs[0].status == "nothing_to_do"


# ------------------------------------------------------------------ case 5: poison results


@pytest.mark.parametrize("poison", [b"\x00\x01garbage\xff\xfe\x00", b"lead_id,email\n\x00\x00\x00\n", b"not,a\ncsv"])
def test_an_unreadable_result_is_held_and_the_others_merge(project: E2EProject, wh: Warehouse, poison: bytes) -> None:
    setup_leads(wh, 60)
    project.write_model(chunk_rows=20)
    emu = project.emulator
    first = _run(project, reporter=_OnSubmit(lambda task: emu.corrupt_result(task, poison), nth=2))
    assert first.exit_code == 3
    states = [r[0] for r in wh.jobs()]
    assert sorted(states) == ["merged", "merged", "result_unreadable"]
    (error,) = [r[5] for r in wh.jobs() if r[0] == "result_unreadable"]
    assert "\x00" not in error and "garbage" not in error and len(error) <= 1000
    assert "--retry-unreadable" in error
    assert len(wh.target()) == 40
    bad = [j for j in first.syncs[0].jobs_needing_attention]
    assert bad and bad[0].task_id
    # Reruns: the held rows are not asked again, nothing duplicates, and every run still says why.
    paid = sum(_paid_per_file(emu).values())
    for _ in range(2):
        again = _run(project)
        assert again.exit_code == 3
        assert sum(_paid_per_file(emu).values()) == paid
    assert len(wh.jobs()) == 3
    status = run_cli(project, "status")
    assert status.returncode == 0 and "result_unreadable" in status.stdout
    # --retry-unreadable: still unreadable, so its rows are asked again as a new question.
    fixed = _run(project, retry_unreadable=True)
    assert fixed.exit_code == 0, fixed.to_dict()
    assert sorted(r[0] for r in wh.jobs()) == ["abandoned", "merged", "merged", "merged"]
    assert len(wh.target()) == 60


# ------------------------------------------------------------------ case 12: a result without a column


def test_a_result_without_a_struct_column_is_incomplete_and_asked_again(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    emu = project.emulator
    first = _run(project, reporter=_OnSubmit(lambda task: emu.drop_result_columns(task, ["title"])))
    s = first.syncs[0]
    assert first.exit_code == 3
    assert s.incomplete_rows == s.rows_enriched > 0
    assert any("no column(s) title" in w for w in s.warnings)
    assert wh.jobs("missing_columns")[0][0] == "title"
    # Those fields are not taken as answered: the next run asks the rows again, just the missing field
    plan = api.plan(project.dir, env=project.env)[0]
    assert plan.rows_by_reason.get("new_fields") == s.rows_enriched and "changed" not in plan.rows_by_reason
    assert [nf["fields"] for nf in plan.new_fields] == [["title"]]
    second = _run(project)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].new_fields["title"]["rows_sent"] == s.rows_enriched
    assert sorted(emu.jobs.values(), key=lambda j: j.created_at)[-1].config["struct"].keys() == {"title"}
    titles = wh.query("SELECT count(title) FROM {t:leads_enriched} WHERE _sixtyfour_status = 'enriched'")[0][0]
    assert titles == second.syncs[0].rows_enriched > 0
    assert _run(project).syncs[0].status == "nothing_to_do"


# ------------------------------------------------------------------ no half-written download is left behind


def test_half_written_downloads_of_a_killed_run_are_removed(project: E2EProject, wh: Warehouse) -> None:
    import tempfile

    setup_leads(wh, 20)
    crashed = run_cli(project, "run", "--yes", failpoint="completed")  # paid, not yet downloaded
    assert crashed.returncode == -signal.SIGKILL
    results = project.dir / ".sixtyfour" / "results" / "enrich_leads"
    results.mkdir(parents=True, exist_ok=True)
    (job_id,) = [r[0] for r in wh.jobs("job_id")]
    # what a kill -9 in the middle of a download leaves: the client's temporary files, for one part and another
    for name in (f"{job_id}.result", f"{job_id}.result.part1"):
        fd, _ = tempfile.mkstemp(dir=results, prefix=f".{name}.", suffix=".part")
        os.write(fd, b"lead_id,email\n1,half")
        os.close(fd)
    resumed = run_cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(wh.target()) == 20
    assert not [p.name for p in results.iterdir()]  # nothing left: no .part file, no result file
