"""Each warehouse's SQL dialect as data: quoting, folding, type names, functions and statement forms.

The pure builders in :mod:`sixtyfour_sync.warehouse.sql` read a :class:`Dialect` and never test which
warehouse they build for; a new warehouse is a new :class:`Dialect` (and, where its SQL really differs,
a new value of one of the ``*_style`` fields with its branch in the builder that needs it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from sixtyfour_sync.warehouse.types import KEY_TYPE_NAMES, TYPE_NAMES, LogicalType, Quoting

__all__ = [
    "BIGQUERY",
    "DATABRICKS",
    "DUCKDB",
    "GENERIC",
    "GENERIC_UPPER",
    "MARIADB",
    "MYSQL",
    "POSTGRES",
    "SNOWFLAKE",
    "SQLITE",
    "Dialect",
]

#: How ``UPDATE target FROM stage`` is written: PostgreSQL/SQLite ``UPDATE ... FROM``; DuckDB the same
#: applied in the target's rowid order; MySQL's update-join; the portable correlated subqueries.
UpdateStyle = Literal["from", "rowid", "join", "correlated"]
#: How a one-row insert-if-absent is written (see ``sql.upsert.insert_if_absent_sql``).
InsertIfAbsentStyle = Literal["on_conflict", "not_exists", "merge"]


@dataclass(frozen=True)
class Dialect:
    """What the SQL builders need to know about one warehouse's SQL."""

    #: Short name, used in messages and to look up :data:`~sixtyfour_sync.warehouse.types.TYPE_NAMES`.
    name: str
    #: The sqlglot dialect whose tokenizer reads this warehouse's SQL (for placeholders).
    sqlglot: str
    quote_char: str = '"'
    #: The closing quote when it differs (SQL Server's ``[name]``).
    quote_end: str | None = None
    #: How unquoted names fold.
    identifier_case: Literal["lower", "upper", "preserve"] = "lower"
    #: Whether quoted names still compare case-insensitively (DuckDB, SQLite, MySQL columns).
    case_insensitive: bool = False
    #: Whether ``$`` may appear in a plain name (we quote anyway; this only widens validation).
    allows_dollar: bool = False
    max_identifier_length: int = 128
    #: The quoting policy when the profile sets none (dbt's default for this warehouse).
    default_quoting: Quoting = field(default_factory=lambda: Quoting(True, True, True, True))
    types: str = "generic"
    #: The type a value is cast to for hashing.
    text_type: str = "VARCHAR"
    concat: Literal["pipes", "function"] = "pipes"
    md5: str = "MD5({})"
    subquery_as: bool = True
    #: Whether ``QUALIFY`` exists (a window count then drops duplicate keys in one pass).
    qualify: bool = False
    now: str = "CURRENT_TIMESTAMP"
    #: The warehouse clock as epoch seconds (a float), read when the statement runs.
    now_epoch: str = "EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)"
    #: Seconds since the timestamp expression ``{col}``.
    age_seconds: str = "EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - {col}))"
    create_table_if_not_exists: bool = True
    add_column_if_not_exists: bool = False
    temp_table: str = "CREATE TEMPORARY TABLE"
    #: MySQL: plain DROP TABLE commits the open transaction even for a temporary table.
    drop_temp_table: str = "DROP TABLE IF EXISTS"
    false_literal: str = "FALSE"
    update_style: UpdateStyle = "from"
    #: False where a later SET assignment may see an earlier one's new value (MySQL's multi-table
    #: UPDATE): guards then decide in the stage first.
    assignments_see_old_values: bool = True
    insert_if_absent: InsertIfAbsentStyle = "not_exists"
    #: How staged JSON text becomes the native JSON type in a MERGE or INSERT ... SELECT (``{}``: the text).
    parse_json: str = "{}"
    #: Whether a PRIMARY KEY is enforced (a duplicate insert fails): only then does the engine insert a
    #: file of new keys without looking for matches first.
    enforces_primary_key: bool = True
    #: A cheap, deterministic hash of ``{}`` (comma-separated expressions) for splitting a selection into
    #: buckets that are sorted one at a time; None: the warehouse sorts the whole selection itself (its own
    #: memory, not this process's).
    bucket_hash: str | None = None
    #: A deterministic hash of ``{}`` (comma-separated expressions), equal for rows with equal values, for the one
    #: count that tells whether two source rows may share their inputs (engine/rows/select.py
    #: ``inputs_repeat_sql``); None: :attr:`bucket_hash`, and where neither is set the rows are always grouped.
    repeat_hash: str | None = None
    #: Whether the selection finds the first key of each question with one GROUP BY over the key and question
    #: alone, joined back to the rows it reads once (a ``MATERIALIZED`` CTE), instead of a window that sorts every
    #: column (DuckDB: 10% less CPU for the grouped selection at 1M rows). Needs a warehouse that computes such a
    #: CTE once; elsewhere the window.
    groups_by_join: bool = False
    #: A subquery of the text values of one parameter holding a JSON array of strings (``?``), for looking rows up
    #: by a list of values in one statement (the answer store, by input hash); None: not offered, and the lookup
    #: reads its selection once more joined to the store instead.
    json_text_values: str | None = None
    #: Whether text (and JSON) values cannot hold a NUL character (PostgreSQL): it is removed before the upsert.
    text_forbids_nul: bool = False
    #: Whether an UPDATE or DELETE names its table by an alias (``UPDATE t AS x``) for the columns its subqueries
    #: compare (BigQuery and Databricks: a column is never qualified by a whole table path); elsewhere by the
    #: table's own name (MySQL's single-table DELETE takes no alias).
    dml_alias: bool = False

    def type_name(self, t: LogicalType, *, key: bool = False) -> str:
        """The column type for a logical type (a key column may need another one)."""
        if key:
            special = KEY_TYPE_NAMES.get(self.types, {}).get(t)
            if special is not None:
                return special
        return self.type_names[t]

    @property
    def type_names(self) -> Mapping[LogicalType, str]:
        """Logical type -> this dialect's column type."""
        return TYPE_NAMES[self.types]


_UPPER_DEFAULT = Quoting(False, False, False, False)

DUCKDB = Dialect(
    name="duckdb",
    sqlglot="duckdb",
    identifier_case="preserve",
    case_insensitive=True,
    max_identifier_length=255,
    types="duckdb",
    qualify=True,
    now_epoch="(epoch_us(get_current_timestamp()) / 1000000.0)",
    add_column_if_not_exists=True,
    update_style="rowid",
    insert_if_absent="on_conflict",
    bucket_hash="hash({})",
    groups_by_join=True,
    json_text_values="SELECT UNNEST(json_extract_string(CAST(? AS JSON), '$[*]'))",
)

POSTGRES = Dialect(
    name="postgres",
    sqlglot="postgres",
    identifier_case="lower",
    allows_dollar=True,
    max_identifier_length=63,
    types="postgres",
    text_type="TEXT",
    # clock_timestamp(): the time the statement runs, not when its transaction began.
    now_epoch="CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    add_column_if_not_exists=True,
    insert_if_absent="on_conflict",
    text_forbids_nul=True,
    # the record's text hashed to 64 bits: rows asking the same question have the same text in every input (their
    # input hash is made of it), so the same record text. Counting 1M rows' takes 0.7 s; the grouped selection
    # of a source whose rows all have inputs of their own cost 3 s more than the plain key order
    repeat_hash="hashtextextended(CAST(ROW({}) AS TEXT), 0)",
    json_text_values="SELECT jsonb_array_elements_text(CAST(? AS JSONB))",
)

SNOWFLAKE = Dialect(
    name="snowflake",
    sqlglot="snowflake",
    identifier_case="upper",
    allows_dollar=True,
    max_identifier_length=255,
    default_quoting=_UPPER_DEFAULT,
    types="snowflake",
    qualify=True,
    now="CURRENT_TIMESTAMP()",
    now_epoch="(CAST(DATE_PART(EPOCH_MICROSECOND, CURRENT_TIMESTAMP()) AS DOUBLE) / 1000000)",
    age_seconds="DATEDIFF(second, {col}, CURRENT_TIMESTAMP())",
    add_column_if_not_exists=True,
    # Snowflake does not enforce primary keys; MERGE statements on one table lock against each other.
    insert_if_absent="merge",
    parse_json="PARSE_JSON({})",
    enforces_primary_key=False,
)

MYSQL = Dialect(
    name="mysql",
    sqlglot="mysql",
    quote_char="`",
    identifier_case="preserve",
    case_insensitive=True,
    allows_dollar=True,
    max_identifier_length=64,
    types="mysql",
    text_type="CHAR",
    # `||` is logical OR unless PIPES_AS_CONCAT is set.
    concat="function",
    now="UTC_TIMESTAMP(6)",
    now_epoch="(UNIX_TIMESTAMP(NOW(6)) + 0E0)",
    age_seconds="(TIMESTAMPDIFF(MICROSECOND, {col}, UTC_TIMESTAMP(6)) / 1000000.0)",
    drop_temp_table="DROP TEMPORARY TABLE IF EXISTS",
    update_style="join",
    assignments_see_old_values=False,
)

#: MariaDB adds ``ADD COLUMN IF NOT EXISTS`` (10.0.2+); otherwise MySQL's dialect.
MARIADB = replace(MYSQL, name="mariadb", add_column_if_not_exists=True)

SQLITE = Dialect(
    name="sqlite",
    sqlglot="sqlite",
    identifier_case="preserve",
    case_insensitive=True,
    types="sqlite",
    text_type="TEXT",
    now="STRFTIME('%Y-%m-%d %H:%M:%f+00:00', 'now')",
    now_epoch="((JULIANDAY('now') - 2440587.5) * 86400.0)",
    age_seconds="((JULIANDAY('now') - JULIANDAY({col})) * 86400.0)",
    insert_if_absent="on_conflict",
)

#: BigQuery: backticks; datasets and tables compare case-sensitively, columns do not (dbt-bigquery quotes
#: every name). Hashing text is ``TO_JSON_STRING`` (see the adapter): it works on every type, JSON too.
BIGQUERY = Dialect(
    name="bigquery",
    sqlglot="bigquery",
    quote_char="`",
    identifier_case="preserve",
    case_insensitive=True,
    max_identifier_length=300,
    types="bigquery",
    text_type="STRING",
    md5="TO_HEX(MD5({}))",
    qualify=True,
    now="CURRENT_TIMESTAMP()",
    now_epoch="UNIX_MICROS(CURRENT_TIMESTAMP()) / 1000000",
    age_seconds="(UNIX_MICROS(CURRENT_TIMESTAMP()) - UNIX_MICROS({col})) / 1000000",
    add_column_if_not_exists=True,
    # Keys are not enforced; concurrent mutating DML on one table is serialized, INSERTs are not.
    insert_if_absent="merge",
    parse_json="PARSE_JSON({})",
    enforces_primary_key=False,
    dml_alias=True,
)

#: Databricks (Unity Catalog): backticks; names fold to lower case and compare case-insensitively (dbt-databricks
#: quotes nothing by default). JSON is kept as STRING.
DATABRICKS = Dialect(
    name="databricks",
    sqlglot="databricks",
    quote_char="`",
    identifier_case="lower",
    case_insensitive=True,
    max_identifier_length=255,
    default_quoting=Quoting(False, False, False, False),
    types="databricks",
    text_type="STRING",
    qualify=True,
    now="current_timestamp",
    now_epoch="unix_micros(current_timestamp) / 1000000",
    age_seconds="(unix_micros(current_timestamp) - unix_micros({col})) / 1000000",
    # Delta lets two appends commit side by side; two MERGEs reading one table conflict.
    insert_if_absent="merge",
    enforces_primary_key=False,
    dml_alias=True,
)

#: Any other SQLAlchemy dialect: the portable forms only.
GENERIC = Dialect(name="sqlalchemy", sqlglot="", create_table_if_not_exists=False, update_style="correlated")

#: SQLAlchemy dialects that fold unquoted names to upper case (Oracle, DB2...).
GENERIC_UPPER = replace(
    GENERIC,
    identifier_case="upper",
    default_quoting=Quoting(None, None, None, None),
    types="generic_upper",
)
