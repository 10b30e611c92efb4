"""A result that comes as several files (every file of the final block: ``output``, ``output.part1``, ...) is read
whole: every part downloaded, stacked and merged, whatever the order the job lists them in; no row of another
part looks "not returned", so nothing is asked (or paid) twice. DuckDB and PostgreSQL, emulator on a socket."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture(params=[(1, "in_order"), (2, "reversed"), (5, "shuffled")], ids=["1-part", "2-parts", "5-parts"])
def parts(request: pytest.FixtureRequest) -> tuple[int, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def emulator_settings(api_key: str, parts: tuple[int, str]) -> EmulatorSettings:
    n, order = parts
    return EmulatorSettings(
        api_keys=frozenset({api_key}),
        job_seconds=0.1,
        failure_rate=0.1,
        seed=5,
        result_parts=n,
        result_parts_order=order,  # type: ignore[arg-type]
        preview_max_rows=0,  # downloaded, not inline
    )


def _run(project: E2EProject, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)


def _paid_per_file(emu: Emulator) -> collections.Counter[str]:
    return collections.Counter(s.file_sha256 for s in emu.submissions if s.status_code == 200 and not s.replay)


def test_every_part_is_merged_and_nothing_is_asked_again(
    project: E2EProject, wh: Warehouse, parts: tuple[int, str]
) -> None:
    setup_leads(wh, 60)
    project.write_model(chunk_rows=30)
    first = _run(project)
    assert first.exit_code == 0, first.to_dict()
    s = first.syncs[0]
    assert s.rows_sent == 60 and s.rows_not_returned == 0 and s.rows_enriched + s.rows_failed == 60
    target = wh.target()
    assert [r[0] for r in target] == list(range(1, 61))
    assert all(r[7] for r in target)  # every row carries the input hash that was sent
    for job in project.emulator.jobs.values():
        assert len([f for f in job.files if f.block_number == 3]) == parts[0]
    again = _run(project)
    assert again.syncs[0].status == "nothing_to_do"
    assert set(_paid_per_file(project.emulator).values()) == {1}
    results = project.dir / ".sixtyfour" / "results"
    assert not [p for p in results.rglob("*") if p.is_file()]  # every part removed once merged


def test_a_refused_link_of_one_part_is_refreshed_and_a_truncated_one_fetched_again(
    project: E2EProject, wh: Warehouse, parts: tuple[int, str]
) -> None:
    setup_leads(wh, 20)
    emu = project.emulator
    emu.inject("GET", "/downloads/", 403, times=1)  # an expired or refused signed link: polled again for a fresh one
    emu.inject("GET", "/downloads/", truncate=True, times=1)  # a body cut short: downloaded again
    result = _run(project)
    assert result.exit_code == 0, result.to_dict()
    assert len(wh.target()) == 20 and result.syncs[0].rows_not_returned == 0
    assert set(_paid_per_file(emu).values()) == {1}


class _CorruptPart(api.Reporter):
    def __init__(self, emu: Emulator, part: int) -> None:
        self.emu, self.part = emu, part

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            self.emu.corrupt_result(data["task_id"], b"\x00garbage\xff", part=self.part)


def test_one_unreadable_part_holds_the_job(project: E2EProject, wh: Warehouse, parts: tuple[int, str]) -> None:
    if parts[0] == 1:
        pytest.skip("one part: the unreadable-result matrix covers it")
    setup_leads(wh, 20)
    result = _run(project, reporter=_CorruptPart(project.emulator, parts[0] - 1))
    assert result.exit_code == 3
    assert [r[0] for r in wh.jobs()] == ["result_unreadable"]
    assert wh.target() == []  # no part merged alone: the rows of the bad part would look "not returned"
    error = wh.jobs()[0][5]
    assert "garbage" not in error and "cannot be read" in error
