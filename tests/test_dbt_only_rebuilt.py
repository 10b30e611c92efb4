"""--only-rebuilt reads dbt's run_results.json: only run, build, seed and snapshot invocations rebuild models."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.dbt import dbt_command, rebuilt_models

RESULTS = [
    {"unique_id": "seed.p.raw_leads", "status": "success"},
    {"unique_id": "model.p.stg_leads", "status": "success"},
    {"unique_id": "model.p.stg_broken", "status": "error"},
    {"unique_id": "test.p.not_null_stg_leads_lead_id.2c6a8b754b", "status": "success"},
]


def _write(tmp_path: Path, **fields: Any) -> Path:
    (tmp_path / "target").mkdir(exist_ok=True)
    (tmp_path / "target" / "run_results.json").write_text(json.dumps({"results": RESULTS, **fields}))
    return tmp_path


@pytest.mark.parametrize("which", ["run", "build", "seed", "snapshot"])
def test_a_building_invocation_counts_its_successful_models(tmp_path: Path, which: str) -> None:
    d = _write(tmp_path, args={"which": which, "invocation_command": f"dbt {which}"})
    assert rebuilt_models(d) == {"raw_leads", "stg_leads"}


@pytest.mark.parametrize("which", ["compile", "test", "generate", "show", "run-operation", "retry"])
def test_compile_test_and_docs_rebuild_nothing(tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture) -> None:
    d = _write(tmp_path, args={"which": which})
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync.dbt"):
        assert rebuilt_models(d) == set()
    assert f"`dbt {which}`, which rebuilds no model" in caplog.text


def test_the_command_word_of_the_invocation_when_which_is_missing(tmp_path: Path) -> None:
    d = _write(tmp_path, args={"invocation_command": "dbt --profiles-dir . compile --select stg_leads"})
    assert rebuilt_models(d) == set()
    assert dbt_command({"metadata": {"invocation_command": "/usr/bin/dbt build -s x"}}) == "build"


def test_a_file_that_does_not_say_its_command_is_read_as_before(tmp_path: Path) -> None:
    d = _write(tmp_path)
    assert dbt_command(json.loads((d / "target" / "run_results.json").read_text())) is None
    assert rebuilt_models(d) == {"raw_leads", "stg_leads"}
