"""Asking again on purpose reaches the API; asking the same question again is a replay booked at $0.

Cases 1 and 2 of the money-safety contract: deliberate re-asks (full refresh, ``when: always``, ``max_age``,
``retry_failed_after``) and re-asks after a cancelled or failed job get a new Idempotency-Key, so the API
starts a new job instead of handing back the old one; a replay is recorded as a replay, never as a second
charge, in the summary, the ledger and ``status``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.1, seed=7)


def _run(project: E2EProject, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)


def _fresh(emu: Emulator) -> list[Any]:
    """Submissions that started a new job (accepted, not replays)."""
    return [s for s in emu.submissions if s.status_code == 200 and not s.replay]


def _charged(emu: Emulator) -> float:
    return float(sum(j.charge_cents or 0 for j in emu.jobs.values()))


@pytest.mark.parametrize(
    ("how", "kw"),
    [("full_refresh", {"full_refresh": True}), ("always", {}), ("max_age", {}), ("retry_failed_after", {})],
)
def test_a_deliberate_re_ask_reaches_the_api(project: E2EProject, wh: Warehouse, how: str, kw: dict[str, Any]) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=100)
    assert _run(project).exit_code == 0
    before = len(_fresh(project.emulator))
    if how == "always":
        project.write_model(when="always", chunk_rows=100)
    elif how in ("max_age", "retry_failed_after"):
        project.write_model(chunk_rows=100, extra=f"  {how}: 1s\n")
        time.sleep(1.2)
    again = _run(project, **kw)
    assert again.exit_code == 0, again.to_dict()
    s = again.syncs[0]
    assert s.rows_sent > 0
    assert s.replays == 0  # a new question: not the old job handed back
    assert len(_fresh(project.emulator)) > before
    # The ledger books exactly what the API charged: nothing twice.
    assert wh.charged_in_ledger() == pytest.approx(_charged(project.emulator))
    keys = [r[0] for r in wh.jobs("idempotency_key")]
    assert len(set(keys)) == len(keys)


def test_a_rebuilt_target_takes_every_answer_back_from_the_store_at_no_charge(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 20)
    assert _run(project).exit_code == 0
    charged = _charged(project.emulator)
    before = wh.target()
    wh.execute("DROP TABLE {t:leads_enriched}")  # rebuilt by dbt, say
    again = _run(project)
    assert again.exit_code == 0, again.to_dict()
    s = again.syncs[0]
    assert s.rows_reused == 20 and s.rows_sent == 0 and s.charged_cents == 0
    assert len(_fresh(project.emulator)) == 1 and _charged(project.emulator) == charged  # nothing asked at all
    assert wh.target() == before


def test_the_same_question_again_is_a_replay_at_no_charge(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    project.write_model(extra="reuse: false\n")  # without the answer store, the same file is sent again
    assert _run(project).exit_code == 0
    charged = _charged(project.emulator)
    # The target is reset (say, rebuilt by dbt): the same rows asked the same way are the same question.
    wh.execute("DROP TABLE {t:leads_enriched}")
    again = _run(project)
    assert again.exit_code == 0, again.to_dict()
    s = again.syncs[0]
    assert s.replays == 1
    assert s.charged_cents == 0 and s.estimated_cost_cents == 0
    assert _charged(project.emulator) == charged  # the API billed once
    assert wh.charged_in_ledger() == pytest.approx(charged)
    first, second = wh.jobs("state, task_id, replay, replay_of, charged_cents, job_id")
    assert second[0] == "merged" and second[2] == 1 and second[3] == first[5] and second[4] == 0
    assert len(wh.target()) == 20
    out = run_cli(project, "status")
    assert "(replay)" in out.stdout


def test_rows_of_a_cancelled_job_are_asked_again(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=60, failure_rate=0.0))
    with slow.serve() as server:
        env = {"SIXTYFOUR_API_URL": server.url}
        assert run_cli(project, "run", "--yes", "--max-wait", "1", env=env).returncode == 3
        out = run_cli(project, "cancel", env=env)
        assert out.returncode == 0 and "cancelled" in out.stdout, out.stdout + out.stderr
        assert [r[0] for r in wh.jobs()] == ["cancelled"]
        status = run_cli(project, "status", env=env)
        assert "cancelled" in status.stdout and "$0.00" in status.stdout
    # The same rows, the same file: a new key, so a new job (here on the fast emulator), not the dead one again.
    again = _run(project)
    assert again.exit_code == 0, again.to_dict()
    assert again.syncs[0].replays == 0
    (k1, s1), (k2, s2) = wh.jobs("idempotency_key, state")
    assert (s1, s2) == ("cancelled", "merged") and k1 != k2
    assert wh.jobs("content_hash")[0] == wh.jobs("content_hash")[1]
    assert len(wh.target()) == 10


class TestAJobTheServerEnded:
    """Jobs here run until the test ends them: a loaded machine cannot let one finish first."""

    @pytest.fixture
    def emulator_settings(self, api_key: str) -> EmulatorSettings:
        return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.1, seed=7)

    @pytest.mark.parametrize("end", ["fail", "cancel_job"])
    def test_its_rows_are_asked_again(self, project: E2EProject, wh: Warehouse, end: str) -> None:
        setup_leads(wh, 10)
        emu = project.emulator

        class EndIt(api.Reporter):
            def on(self, event_name: str, sync: str, **data: Any) -> None:
                if event_name == "submitted" and len(emu.jobs) == 1:
                    getattr(emu, end)(data["task_id"])

        class CompleteIt(api.Reporter):
            def on(self, event_name: str, sync: str, **data: Any) -> None:
                if event_name == "submitted":
                    emu.complete(str(data["task_id"]))

        first = _run(project, reporter=EndIt())
        assert first.exit_code == 3
        assert [r[0] for r in wh.jobs()] == ["failed" if end == "fail" else "cancelled"]
        second = _run(project, reporter=CompleteIt())
        assert second.exit_code == 0, second.to_dict()
        assert second.syncs[0].replays == 0
        assert len(_fresh(emu)) == 2
        assert len(wh.target()) == 10
        assert wh.charged_in_ledger() == pytest.approx(_charged(emu))
