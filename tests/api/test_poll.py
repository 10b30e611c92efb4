"""The pure job poller."""

from __future__ import annotations

import pytest

from sixtyfour_sync.api import JobPoller, JobStatus
from sixtyfour_sync.errors import ConfigError


def test_backs_off_to_the_cap_and_stops_on_terminal() -> None:
    poller = JobPoller(initial=2.0, factor=1.5, cap=5.0)
    assert [poller.next_delay("running") for _ in range(5)] == [2.0, 3.0, 4.5, 5.0, 5.0]
    assert poller.next_delay("COMPLETED") is None
    assert poller.next_delay(JobStatus.from_api({"status": "failed"}, task_id="t")) is None
    assert poller.next_delay(JobStatus.from_api({"status": "continued_as_new"}, task_id="t")) == 5.0
    poller.reset()
    assert poller.next_delay(None) == 2.0


def test_initial_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIXTYFOUR_SYNC_POLL_INTERVAL", "0.25")
    assert JobPoller().next_delay("running") == 0.25
    monkeypatch.delenv("SIXTYFOUR_SYNC_POLL_INTERVAL")
    assert JobPoller().next_delay("running") == 5.0


def test_zero_interval_still_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    poller = JobPoller(initial=0.0, cap=1.0)
    delays = [poller.next_delay("running") for _ in range(3)]
    assert delays[0] == 0.0 and delays[1] is not None and delays[1] > 0


@pytest.mark.parametrize("value", ["soon", "-1", "inf"])
def test_bad_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SIXTYFOUR_SYNC_POLL_INTERVAL", value)
    with pytest.raises(ConfigError, match="SIXTYFOUR_SYNC_POLL_INTERVAL"):
        JobPoller()
