"""Warehouse adapters: one class per backend, chosen by the profile output's ``type``.

``connect(target)`` imports the backend module (and its driver) only when that backend is used, so a
missing driver is a :class:`~sixtyfour_sync.errors.MissingDriverError` with the extra to install, not
an ImportError at start-up.

The layer, one module per job:

- :mod:`.types`: value types (``TableRef``, ``Column``, ``UpsertPart``, ``Guard``...) and each dialect's
  type names as data; :mod:`.dialect`: each dialect's SQL facts as data;
- :mod:`.sql`: pure SQL builders (identifiers, placeholders, DDL, catalog, DML, upsert, selection);
- :mod:`.arrow` and :mod:`.parts`: pure Arrow helpers and upsert-part validation;
- :mod:`.session` and :mod:`.adapter`: the I/O every backend shares; :mod:`.facade`: the SQL methods an
  adapter offers the engine;
- one module per backend: :mod:`.duckdb`, :mod:`.postgres` (+ :mod:`.postgres_copy`), :mod:`.snowflake`
  (+ :mod:`.snowflake_auth`, :mod:`.snowflake_arrow`), :mod:`.sqlalchemy` (generic, MySQL/MariaDB, SQLite).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.errors import MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.session import Session
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

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import ResolvedTarget, TargetConfig

__all__ = [
    "ADAPTERS",
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
    "adapter_class",
    "connect",
]

#: ``type`` -> (module, class, the driver package, the pip extra that installs it).
ADAPTERS: dict[str, tuple[str, str, str, str]] = {
    "duckdb": ("sixtyfour_sync.warehouse.duckdb", "DuckDBAdapter", "duckdb", "duckdb"),
    "postgres": ("sixtyfour_sync.warehouse.postgres", "PostgresAdapter", "psycopg", "postgres"),
    "snowflake": ("sixtyfour_sync.warehouse.snowflake", "SnowflakeAdapter", "snowflake.connector", "snowflake"),
    "sqlalchemy": ("sixtyfour_sync.warehouse.sqlalchemy", "SqlAlchemyAdapter", "sqlalchemy", "sqlalchemy"),
    "bigquery": ("sixtyfour_sync.warehouse.bigquery", "BigQueryAdapter", "google.cloud.bigquery", "bigquery"),
    "databricks": ("sixtyfour_sync.warehouse.databricks", "DatabricksAdapter", "databricks.sdk", "databricks"),
}


def adapter_class(kind: str) -> type[Adapter[Any]]:
    """The adapter class for a ``type:``, importing its module (and driver) now."""
    try:
        module_name, class_name, driver, extra = ADAPTERS[kind]
    except KeyError:
        raise WarehouseError(f"no warehouse adapter for type {kind!r}; supported: {', '.join(ADAPTERS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name:
            raise WarehouseError(f"the {kind} adapter is not available in this installation") from exc
        if missing and (missing == driver or driver.startswith(missing + ".") or missing.startswith(driver)):
            raise MissingDriverError(
                f"the {kind} warehouse needs the {driver!r} package, which is not installed",
                hint=f"pip install 'sixtyfour-sync[{extra}]'",
            ) from exc
        raise
    cls: type[Adapter[Any]] = getattr(module, class_name)
    return cls


def connect(
    target: ResolvedTarget | TargetConfig, *, project_dir: Path | None = None, quoting: Quoting | None = None
) -> Adapter[Any]:
    """Open an adapter for a resolved target (or a bare target config) and connect it.

    ``quoting`` overrides how names fold (dbt's ``quoting:``); by default a resolved target's own
    (dbt_project.yml's) applies, and a Snowflake output's ``quoting:`` wins over both. Connection failures
    raise :class:`~sixtyfour_sync.errors.WarehouseError` naming where (host, port, database, file) but never
    the password.
    """
    from sixtyfour_sync.config.profiles import ResolvedTarget

    config = target.config if isinstance(target, ResolvedTarget) else target
    cls = adapter_class(str(config.type))
    adapter = cls.from_target(target, project_dir=project_dir, quoting=quoting)
    try:
        adapter.open()
    except BaseException:
        adapter.close()
        raise
    return adapter
