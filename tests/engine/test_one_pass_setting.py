"""The source size above which a refresh tries the one pass: a default, an override, a located refusal."""

from __future__ import annotations

import pytest

from sixtyfour_sync.engine import runner_submit
from sixtyfour_sync.errors import ConfigError


def test_the_default_and_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runner_submit.PROBE_SOURCE_ENV, raising=False)
    assert runner_submit._one_pass_above() == runner_submit.PROBE_SOURCE_ROWS == 100_000
    monkeypatch.setenv(runner_submit.PROBE_SOURCE_ENV, " 0 ")
    assert runner_submit._one_pass_above() == 0
    monkeypatch.setenv(runner_submit.PROBE_SOURCE_ENV, "")
    assert runner_submit._one_pass_above() == 100_000


@pytest.mark.parametrize("raw", ["lots", "-5", "1e5"])
def test_a_value_that_is_not_a_number_of_rows_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(runner_submit.PROBE_SOURCE_ENV, raw)
    with pytest.raises(ConfigError) as exc:
        runner_submit._one_pass_above()
    assert "SIXTYFOUR_SYNC_ONE_PASS_ABOVE" in str(exc.value) and repr(raw) in str(exc.value)
