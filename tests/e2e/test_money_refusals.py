"""Refusals change nothing; rate limits wait; bugs are not swallowed.

Case 6: nothing changes in the target or the ledger before the first request is accepted: a config over the
API's 300,000 characters, or a 401/402/403 on the first submission, adds no target column and leaves no job row.
Case 7: a 429 that outlasts the client's retries makes the run wait (the limit is per minute) and go on; when it
must stop, it exits 3 (partial, resumable), never 1.
Case 11: the merge catches only the errors it expects; anything else propagates (a bug is a bug), and the paid
job stays ``downloaded`` for the next run.
"""

from __future__ import annotations

from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.errors import ConfigError
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.0)


def _run(project: E2EProject, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)


def _nothing_written(wh: Warehouse, *, target_columns: list[str] | None = None) -> None:
    assert wh.jobs() == []
    assert wh.runs() == []
    if target_columns is None:
        assert not wh.exists("leads_enriched")
    else:
        assert wh.columns("leads_enriched") == target_columns


def test_a_config_too_large_for_the_api_is_refused_before_anything_is_written(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 5)
    project.write_model(extra="")
    text = (project.dir / "models" / "leads.yml").read_text()
    text = text.replace("    tier: low\n", "    tier: low\n    research_plan: " + "x" * 300_001 + "\n")
    (project.dir / "models" / "leads.yml").write_text(text)
    result = _run(project)
    assert result.exit_code == 1
    assert "300,000" in " ".join(result.syncs[0].errors)
    assert "leads.yml" in " ".join(result.syncs[0].errors)
    _nothing_written(wh)
    assert not project.emulator.submissions


@pytest.mark.parametrize("status", [401, 402, 403])
def test_a_refused_first_submission_leaves_no_trace(project: E2EProject, wh: Warehouse, status: int) -> None:
    setup_leads(wh, 5)
    project.emulator.inject("POST", "/bulk-intelligence", status=status, times=10)
    result = _run(project)
    assert result.exit_code == 1
    assert str(status) in " ".join(result.syncs[0].errors)
    _nothing_written(wh)


def test_a_refusal_after_the_struct_grew_adds_no_column(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    assert _run(project).exit_code == 0
    columns = wh.columns("leads_enriched")
    runs = wh.runs()
    text = (project.dir / "models" / "leads.yml").read_text()
    text = text.replace("      title: The individual's job title\n", "      title: Job title\n      phone: Phone\n")
    (project.dir / "models" / "leads.yml").write_text(text)
    project.emulator.inject("POST", "/bulk-intelligence", status=402, times=10)
    result = _run(project)
    assert result.syncs[0].status == "no_credits" and result.exit_code == 1
    assert wh.columns("leads_enriched") == columns  # no `phone` yet: nothing was bought
    assert len(wh.jobs()) == 1 and wh.runs() == runs


def test_a_bad_key_is_refused_before_anything_is_read_or_written(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    with pytest.raises(ConfigError, match="the API refused the key"):
        api.run(project.dir, api_key="sk-not-a-valid-key-0000", api_url=project.url, env=project.env)
    _nothing_written(wh)
    out = run_cli(project, "run", "--yes", env={"SIXTYFOUR_API_KEY": "sk-not-a-valid-key-0000"})
    assert out.returncode == 1 and "refused the key" in out.stderr
    assert "sk-not-a-valid-key-0000" not in out.stdout + out.stderr
    _nothing_written(wh)


def test_a_429_that_outlasts_the_retries_waits_and_goes_on(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    # more 429s in a row than the client retries (5 attempts), each with a short Retry-After
    project.emulator.inject("POST", "/bulk-intelligence", status=429, times=7, retry_after=0.2)
    result = _run(project)
    assert result.exit_code == 0, result.to_dict()
    assert {r[0] for r in wh.jobs()} == {"merged"}
    assert len(wh.target()) == 30


def test_a_429_that_never_ends_stops_as_partial_and_the_next_run_resends(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 10)
    project.emulator.inject("POST", "/bulk-intelligence", status=429, times=1000, retry_after=0.1)
    result = _run(project, submit_retry_seconds=1.0)
    assert result.exit_code == 3, result.to_dict()
    assert "same Idempotency-Key" in " ".join(result.syncs[0].errors)
    (job,) = wh.jobs("state, idempotency_key")
    assert job[0] == "submitting"
    project.emulator.clear_faults()
    again = _run(project)
    assert again.exit_code == 0, again.to_dict()
    assert [r[0] for r in wh.jobs()] == ["merged"]
    accepted = [s for s in project.emulator.submissions if s.status_code == 200]
    assert [s.idempotency_key for s in accepted] == [job[1]]


def test_a_bug_in_the_merge_is_not_swallowed(
    project: E2EProject, wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_leads(wh, 5)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("a bug in the merge")

    monkeypatch.setattr("sixtyfour_sync.engine.results.fetch.plan_merge", broken)
    with pytest.raises(TypeError, match="a bug in the merge"):
        _run(project)
    # paid, and kept active for the next run (completion is recorded with the merge, which never happened)
    assert [r[0] for r in wh.jobs()] in (["submitted"], ["completed"])
    assert [r[1] for r in wh.runs()] == ["crashed"]  # the run row is closed, not left running
    monkeypatch.undo()
    again = _run(project)
    assert again.exit_code == 0, again.to_dict()
    assert [r[0] for r in wh.jobs()] == ["merged"]
