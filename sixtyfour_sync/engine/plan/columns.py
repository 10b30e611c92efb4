"""What a sync reads and writes: its input columns, its key's types, and the target columns it owns, in the
warehouse's logical types."""

from __future__ import annotations

import pyarrow as pa

from sixtyfour_sync.config.models import LoadedSync, StructField, SyncSpec
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import SUPPORTED_KEY_TYPES, KeyType, refusal_message
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef

__all__ = [
    "arrow_to_logical",
    "field_logical_type",
    "owned_columns",
    "query_columns",
    "resolve_inputs",
    "resolve_key_types",
    "target_ref",
]

_FIELD_TYPES = {
    "str": LogicalType.TEXT,
    "int": LogicalType.BIGINT,
    "float": LogicalType.DOUBLE,
    "bool": LogicalType.BOOLEAN,
}


def arrow_to_logical(t: pa.DataType) -> LogicalType:
    """The nearest logical type of an Arrow key type (a new target's key columns take the source key's own
    type: :meth:`Adapter.key_column`). An exact number is never a double: a decimal or an unsigned 64-bit
    integer is text here."""
    if pa.types.is_integer(t) and not pa.types.is_uint64(t):
        return LogicalType.BIGINT
    if pa.types.is_floating(t):
        return LogicalType.DOUBLE
    if pa.types.is_boolean(t):
        return LogicalType.BOOLEAN
    if pa.types.is_timestamp(t):
        return LogicalType.TIMESTAMP
    return LogicalType.TEXT


def field_logical_type(field: StructField) -> LogicalType:
    """The target column type of a struct field: JSON for lists, dicts, objects and list[enum]; BIGINT, DOUBLE,
    BOOLEAN for int, float, bool; TEXT for str, enum and a type the API's schema does not list."""
    if field.is_json:
        return LogicalType.JSON
    return _FIELD_TYPES.get(field.type, LogicalType.TEXT)


def owned_columns(spec: SyncSpec) -> list[Column]:
    """The columns a sync owns in its target: fields, confidences, its own bookkeeping."""
    cols = [Column(spec.column_for(n), field_logical_type(f)) for n, f in spec.struct.items()]
    if spec.field_confidence:
        cols += [Column(spec.column_for(f"{n}_confidence"), LogicalType.BIGINT) for n in spec.struct]
    cols += [
        Column(spec.bookkeeping("status"), LogicalType.TEXT),
        Column(spec.bookkeeping("enriched_at"), LogicalType.TIMESTAMP),
        Column(spec.bookkeeping("task_id"), LogicalType.TEXT),
        Column(spec.bookkeeping("input_hash"), LogicalType.TEXT),
        Column(spec.bookkeeping("spec_hash"), LogicalType.TEXT),
        Column(spec.bookkeeping("tier"), LogicalType.TEXT),
    ]
    if spec.gating:  # which fields of the row's last answer were held back, and why (JSON)
        cols.append(Column(spec.bookkeeping("field_status"), LogicalType.TEXT))
    if spec.target.on_source_delete == "flag":  # when a run found the row's key gone from the source
        cols.append(Column(spec.bookkeeping("source_deleted_at"), LogicalType.TIMESTAMP))
    return cols


def target_ref(spec: SyncSpec) -> TableRef:
    """The sync's target table."""
    return TableRef(spec.target.table, spec.target.schema_, spec.target.database)


def query_columns(adapter: Adapter, sql: str) -> list[str]:
    """The column names a query returns (run with LIMIT 0)."""
    with adapter.session() as s:
        names, _ = s._query(adapter.limit_sql(f"SELECT * FROM ({sql}) {adapter.subquery_alias('q')}", 0))
    return [adapter.denormalize_identifier(n) for n in names]


def resolve_inputs(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> list[str]:
    """The input columns of a sync: ``source.columns``, or every source column but the key and bookkeeping."""
    spec = loaded.spec
    available = query_columns(adapter, source_sql)
    lower = {c.lower(): c for c in available}
    problems = []

    def problem(path: str, message: str, hint: str) -> None:
        problems.append(ConfigProblem(str(loaded.file), f"{spec.name}.{path}", message, line=loaded.line, hint=hint))

    listing = f"source columns: {', '.join(available)}"
    for k in spec.source.key:
        if k.lower() not in lower:
            problem("source.key", f"key column {k!r} is not in the source", listing)
    if spec.source.columns:
        for c in spec.source.columns:
            if c.lower() not in lower:
                problem("source.columns", f"column {c!r} is not in the source", listing)
        inputs = list(spec.source.columns)
    else:
        keys = {k.lower() for k in spec.source.key}
        inputs = [c for c in available if c.lower() not in keys and not c.lower().startswith("_sixtyfour")]
    clash = [f for f in spec.struct if f.lower() in {i.lower() for i in inputs}]
    if clash:
        problem(
            "struct",
            f"struct field(s) {', '.join(clash)} have the name of a source column that is sent",
            "rename the field, or list source.columns without that column",
        )
    if problems:
        raise ConfigError(problems=problems)
    return inputs


def resolve_key_types(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> dict[str, KeyType]:
    """Each source key column's type (warehouse/keytypes.py); a ConfigError naming every key of a type the sync
    cannot carry exactly, with the supported key types (``validate``, ``plan`` and ``run`` before paying)."""
    spec = loaded.spec
    found = adapter.key_types(source_sql, spec.source.key)
    problems = []
    for k, kt in found.items():
        if kt is None:
            label = adapter.source_column_types(source_sql, [k]).get(k) or _arrow_label(adapter, source_sql, k)
            problems.append(
                ConfigProblem(
                    str(loaded.file),
                    f"{spec.name}.source.key",
                    refusal_message(k, label),
                    line=loaded.line,
                    hint="cast the key in source.sql to one of these types (an id as text, say), or key the sync "
                    f"by another column; supported key types: {SUPPORTED_KEY_TYPES}",
                )
            )
    if problems:
        raise ConfigError(problems=problems)
    return {k: kt for k, kt in found.items() if kt is not None}


def _arrow_label(adapter: Adapter, source_sql: str, key: str) -> str:
    """A refused key's type as its rows arrive, for the message where the warehouse names none."""
    sql = adapter.limit_sql(
        f"SELECT {adapter.quote(key, what='key column')} FROM ({source_sql}) {adapter.subquery_alias('k')}", 1
    )
    for batch in adapter.stream(sql):
        return str(batch.schema.field(0).type)
    return "unknown"
