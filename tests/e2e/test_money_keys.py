"""A refused key never drops paid jobs; a job the API does not know is held, not bought again (case 3).

401/403 while polling or downloading stop the run and leave every job as it was: the next run with a valid key
finishes them without submitting anything again. A 404 on job-status makes the job ``lost``: shown in
``status`` and the summary, its rows held until ``run --retry-lost``.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli, unique_key
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture(params=[False, True], ids=["keys-kept", "keys-forgotten"])
def forget(request: pytest.FixtureRequest) -> bool:
    """Whether the API forgets Idempotency-Keys (so nothing can pass only because the API replayed)."""
    return bool(request.param)


@pytest.fixture
def emulator_settings(api_key: str, forget: bool) -> EmulatorSettings:
    ttl = 0 if forget else 86_400
    return EmulatorSettings(
        api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.0, idempotency_ttl_seconds=ttl
    )


def _run(project: E2EProject, key: str | None = None, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=key or project.api_key, api_url=project.url, env=project.env, **kw)


def _fresh(emu: Emulator) -> int:
    return sum(1 for s in emu.submissions if s.status_code == 200 and not s.replay)


class _OnSubmit(api.Reporter):
    """Calls ``action(task_id)`` when the n-th file is accepted."""

    def __init__(self, action: Any, nth: int = 1) -> None:
        self.action, self.nth, self.seen = action, nth, 0
        self.lock = threading.Lock()

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            with self.lock:
                self.seen += 1
                if self.seen == self.nth:
                    self.action(data["task_id"])


@pytest.mark.parametrize("status", [401, 403])
def test_a_key_refused_while_polling_keeps_the_jobs(project: E2EProject, wh: Warehouse, status: int) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    emu = project.emulator

    def refuse(task_id: str) -> None:
        if status == 401:
            emu.revoke_key(project.api_key)  # the key was rotated while the jobs ran
        else:
            emu.inject("GET", "/job-status", status=403, times=1000)

    first = _run(project, reporter=_OnSubmit(refuse))
    assert first.exit_code == 1
    assert "the API key was refused" in (first.error or "")
    assert "next run with a valid key finishes them" in (first.error or "")
    states = [r[0] for r in wh.jobs()]
    assert "failed" not in states and "rejected" not in states
    assert "submitted" in states
    paid = _fresh(emu)
    # A valid key (the rotated one, same organisation) finishes every job without buying anything again.
    new_key = unique_key()
    emu.add_key(new_key, same_org_as=project.api_key)
    emu.clear_faults()
    second = _run(project, key=new_key)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].resumed_jobs >= 1
    assert len(wh.target()) == 30
    # every file was paid for exactly once (a refused first attempt is no job at the API)
    fresh = collections.Counter(x.file_sha256 for x in emu.submissions if x.status_code == 200 and not x.replay)
    assert len(fresh) == 3 and set(fresh.values()) == {1}, (paid, fresh)
    assert {r[0] for r in wh.jobs()} <= {"merged", "rejected"}


def test_a_job_the_api_does_not_know_is_lost_and_its_rows_held(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    project.write_model(chunk_rows=10)
    emu = project.emulator
    first = _run(project, reporter=_OnSubmit(emu.forget_job))
    assert first.exit_code == 3
    s = first.syncs[0]
    assert [j.state for j in s.jobs_needing_attention] == ["lost"]
    assert sorted(r[0] for r in wh.jobs()) == ["lost", "merged"]
    paid = _fresh(emu)
    # The next run does not buy the lost job's rows again.
    second = _run(project)
    assert _fresh(emu) == paid
    assert second.syncs[0].rows_sent == 0
    assert second.exit_code == 3 and "need attention" in " ".join(second.syncs[0].errors)
    status = run_cli(project, "status")
    assert "lost" in status.stdout
    # --retry-lost looks again; still unknown, the rows are released and asked as a new question.
    third = _run(project, retry_lost=True)
    assert third.exit_code == 0, (third.syncs[0].errors, [(j.state, j.error) for j in third.syncs[0].jobs])
    assert _fresh(emu) == paid + 1
    assert sorted(r[0] for r in wh.jobs()) == ["abandoned", "merged", "merged"]
    assert len(wh.target()) == 20


def test_a_job_lost_under_another_key_is_found_again_with_the_right_one(
    project: E2EProject, wh: Warehouse, api_key: str, forget: bool
) -> None:
    setup_leads(wh, 10)
    emu = Emulator(
        EmulatorSettings(
            api_keys=frozenset({api_key}),
            job_seconds=30,
            failure_rate=0.0,
            idempotency_ttl_seconds=0 if forget else 86_400,
        )
    )
    other = unique_key()
    emu.add_key(other)  # a valid key of another organisation: it sees none of these jobs
    with emu.serve() as server:

        def run(key: str, **kw: Any) -> api.RunResult:
            return api.run(project.dir, api_key=key, api_url=server.url, env=project.env, **kw)

        first = run(api_key, max_wait_seconds=1.0)
        assert first.exit_code == 3
        assert [r[0] for r in wh.jobs()] == ["submitted"]
        lost = run(other)  # a resume on a machine with another organisation's key: 404
        assert lost.exit_code == 3
        assert [r[0] for r in wh.jobs()] == ["lost"]
        assert sum(1 for s in emu.submissions if s.status_code == 200) == 1  # nothing bought again
        emu.complete(next(iter(emu.jobs)))
        found = run(api_key, retry_lost=True)
    assert found.exit_code == 0, found.to_dict()
    assert [r[0] for r in wh.jobs()] == ["merged"]
    assert sum(1 for s in emu.submissions if s.status_code == 200 and not s.replay) == 1
    assert len(wh.target()) == 10
