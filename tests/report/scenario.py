"""Three real runs against the emulator, so a report has something to show.

1. 20 leads in two files: the API loses the first job (a ``lost`` job, held for a person), the second merges;
2. 10 new leads: the run stops waiting before its job completes (it stays in flight);
3. nothing new: the run finishes the job the second run left (its charge is "charged later" for run 2).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import Warehouse, setup_leads


def settings(api_key: str) -> EmulatorSettings:
    """Jobs that never finish by themselves (the scenario completes them), some rows that fail."""
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.2, seed=11)


class _Steer(api.Reporter):
    """Loses the first file the API accepts and completes the others at once."""

    def __init__(self, emu: Emulator) -> None:
        self.emu, self.seen, self.lost = emu, 0, ""
        self.lock = threading.Lock()

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name != "submitted":
            return
        with self.lock:
            self.seen += 1
            if self.seen == 1:
                self.lost = str(data["task_id"])
                self.emu.forget_job(self.lost)
            else:
                self.emu.complete(str(data["task_id"]))


@dataclass
class Scenario:
    runs: list[api.RunResult]
    lost_task: str
    late_task: str


def three_runs(project: E2EProject, wh: Warehouse) -> Scenario:
    """Run the three runs; return their results and the two task ids that matter."""
    emu = project.emulator

    def run(**kw: Any) -> api.RunResult:
        return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)

    setup_leads(wh, 20)
    project.write_model(chunk_rows=10)
    steer = _Steer(emu)
    first = run(reporter=steer)
    assert first.exit_code == 3, first.to_dict()  # a job is lost
    setup_leads(wh, 30)  # the same 20 leads and 10 new ones
    before = set(emu.jobs)
    second = run(max_wait_seconds=0.3)
    assert second.exit_code == 3, second.to_dict()  # stopped waiting
    (late,) = set(emu.jobs) - before
    emu.complete(late)
    third = run()
    assert third.syncs[0].resumed.rows_merged == 10, third.to_dict()  # it finished run 2's job
    return Scenario([first, second, third], steer.lost, late)
