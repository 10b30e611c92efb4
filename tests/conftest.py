"""Shared fixtures for every test directory."""

from __future__ import annotations

# The BigQuery and Databricks emulators, one server each per session.
from tests.cloud_emulators import bigquery_emulator, databricks_emulator  # noqa: F401
