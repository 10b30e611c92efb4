"""Shared fixtures for every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest

# The BigQuery and Databricks emulators, one server each per session.
from tests.cloud_emulators import bigquery_emulator, databricks_emulator  # noqa: F401

#: The fast loop (``pytest -m "not slow"``, under a minute) is pure logic, fakes and the in-process emulator:
#: a test that runs a child process, a warehouse server or a cloud emulator, or a browser, is slow. Whole
#: directories and files are marked here; a slow test elsewhere carries ``@pytest.mark.slow`` itself.
SLOW_DIRS = {"e2e"}
SLOW_FILES = {
    "tests/warehouse/test_suite.py",
    "tests/warehouse/test_postgres.py",
    "tests/warehouse/test_sqlalchemy.py",
    "tests/warehouse/test_bigquery.py",
    "tests/warehouse/test_databricks.py",
    "tests/warehouse/test_snowflake.py",
    "tests/warehouse/test_cloud_contract.py",
    "tests/warehouse/test_ledger_lease.py",
    "tests/report/test_collect.py",
    "tests/report/test_browser.py",
    "tests/report/test_report_e2e.py",
    "tests/report/test_demo_report.py",
    "tests/emulator/test_emulator_performance.py",
    "tests/test_demo.py",
    "tests/test_benchmarks_run.py",
    "tests/test_init.py",
    "tests/test_packaging.py",
    "tests/engine/results/test_key_roundtrip.py",
    "tests/receiver/test_server.py",
    "tests/emulator/test_emulator_admin_cli.py",
}
_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(_ROOT)
        if rel.as_posix() in SLOW_FILES or (len(rel.parts) > 2 and rel.parts[1] in SLOW_DIRS):
            item.add_marker(pytest.mark.slow)
