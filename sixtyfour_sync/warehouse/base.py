"""The warehouse adapter interface, importable from its old home.

The layer now lives in one module per job: :mod:`~sixtyfour_sync.warehouse.types` (value types, type
names per dialect), :mod:`~sixtyfour_sync.warehouse.dialect` (dialect facts as data),
:mod:`~sixtyfour_sync.warehouse.sql` (pure SQL builders), :mod:`~sixtyfour_sync.warehouse.arrow` and
:mod:`~sixtyfour_sync.warehouse.parts` (Arrow helpers), :mod:`~sixtyfour_sync.warehouse.session` and
:mod:`~sixtyfour_sync.warehouse.adapter` (I/O). Everything that was imported from here still is.
"""

from __future__ import annotations

from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.arrow import dedupe_last, has_duplicate_keys, json_columns_to_text
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql.placeholders import convert_qmark, count_qmarks
from sixtyfour_sync.warehouse.types import (
    Capabilities,
    Column,
    EnsureResult,
    Guard,
    KeyReport,
    LogicalType,
    Quoting,
    TableRef,
    UpsertPart,
    UpsertResult,
)

__all__ = [
    "Adapter",
    "Capabilities",
    "Column",
    "EnsureResult",
    "Guard",
    "KeyReport",
    "LogicalType",
    "Quoting",
    "Session",
    "TableRef",
    "UpsertPart",
    "UpsertResult",
    "convert_qmark",
    "count_qmarks",
    "dedupe_last",
    "has_duplicate_keys",
    "json_columns_to_text",
]
