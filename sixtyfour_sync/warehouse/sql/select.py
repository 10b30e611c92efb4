"""Selection and hashing SQL: source queries, key checks, clean sources, row hashes and the clock (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sixtyfour_sync.warehouse.sql.identifiers import Names, strip_sql
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "KeyReportSql",
    "age_seconds_sql",
    "clean_source_sql",
    "key_report_sql",
    "limit_sql",
    "now_epoch_sql",
    "now_sql",
    "row_hash_sql",
    "source_sql",
]


def source_sql(
    names: Names,
    *,
    table: TableRef | None = None,
    sql: str | None = None,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    order_by: Sequence[str] | None = None,
) -> str:
    """``SELECT columns FROM table|(sql) WHERE where ORDER BY ...``; ``where``/``sql`` are user SQL."""
    if (table is None) == (sql is None):
        raise ValueError("source_sql needs exactly one of table= or sql=")
    if table is not None:
        from_sql = names.table(table)
    else:
        assert sql is not None
        from_sql = f"({strip_sql(sql, names.dialect.sqlglot)}) {names.alias('_src')}"
    cols = names.columns(columns, what="source column") if columns else "*"
    out = f"SELECT {cols} FROM {from_sql}"
    if where and where.strip():
        out += f" WHERE ({strip_sql(where, names.dialect.sqlglot)})"
    if order_by:
        out += " ORDER BY " + ", ".join(names.order_term(o, what="source order_by") for o in order_by)
    return out


def limit_sql(sql: str, n: int) -> str:
    """``sql`` limited to ``n`` rows."""
    return f"{sql} LIMIT {int(n)}"


def _key_terms(names: Names, key: Sequence[str], alias: str) -> list[str]:
    if not key:
        raise ValueError("a key needs at least one column")
    return [f"{alias}.{names.quote(k, what='key column')}" for k in key]


@dataclass(frozen=True)
class KeyReportSql:
    """The four queries of a key report: totals, duplicate counts, and the two sample queries."""

    totals: str
    duplicates: str
    null_samples: str
    duplicate_samples: str


def key_report_sql(names: Names, source: str, key: Sequence[str], *, sample: int = 20) -> KeyReportSql:
    """Count NULL and duplicate keys of a source query in SQL, and fetch up to ``sample`` examples each."""
    src = f"({strip_sql(source, names.dialect.sqlglot)}) {names.alias('s')}"
    ks = _key_terms(names, key, "s")
    any_null = " OR ".join(f"{k} IS NULL" for k in ks)
    none_null = " AND ".join(f"{k} IS NOT NULL" for k in ks)
    key_list = ", ".join(ks)
    n = max(int(sample), 0)
    return KeyReportSql(
        totals=f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {any_null} THEN 1 ELSE 0 END), 0) FROM {src}",
        duplicates=(
            f"SELECT COUNT(*), COALESCE(SUM(d.n), 0) FROM (SELECT COUNT(*) AS n FROM {src} "
            f"WHERE {none_null} GROUP BY {key_list} HAVING COUNT(*) > 1) {names.alias('d')}"
        ),
        null_samples=limit_sql(f"SELECT {key_list} FROM {src} WHERE {any_null}", n),
        duplicate_samples=limit_sql(
            f"SELECT {key_list}, COUNT(*) AS n FROM {src} WHERE {none_null} GROUP BY {key_list} "
            f"HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC, {key_list}",
            n,
        ),
    )


def clean_source_sql(names: Names, source: str, key: Sequence[str]) -> str:
    """The source minus rows with a NULL key part or a duplicated key, so they are never sent.

    With ``QUALIFY`` one window count does it; the portable form joins the source to its keys that occur
    exactly once (equality never matches NULL, so NULL keys drop out too).
    """
    inner = strip_sql(source, names.dialect.sqlglot)
    if names.dialect.qualify:
        ks = _key_terms(names, key, "s")
        return (
            f"SELECT s.* FROM ({inner}) {names.alias('s')} WHERE {' AND '.join(f'{k} IS NOT NULL' for k in ks)} "
            f"QUALIFY COUNT(*) OVER (PARTITION BY {', '.join(ks)}) = 1"
        )
    ks = _key_terms(names, key, "u")
    key_list = ", ".join(ks)
    none_null = " AND ".join(f"{k} IS NOT NULL" for k in ks)
    return (
        f"SELECT s.* FROM ({inner}) {names.alias('s')} JOIN (SELECT {key_list} FROM ({inner}) "
        f"{names.alias('u')} WHERE {none_null} GROUP BY {key_list} HAVING COUNT(*) = 1) "
        f"{names.alias('k')} ON {names.key_join(key, 's', 'k')}"
    )


def _text(names: Names, expr: str) -> str:
    return f"CAST({expr} AS {names.dialect.text_type})"


def _concat(names: Names, parts: Sequence[str]) -> str:
    if names.dialect.concat == "function":
        return "CONCAT(" + ", ".join(parts) + ")"
    return "(" + " || ".join(parts) + ")"


def row_hash_sql(names: Names, columns: Sequence[str], alias: str | None = None) -> str:
    """A deterministic hex MD5 over the columns' text forms, NULL-safe and separator-safe.

    Each value is encoded as ``'N'`` for NULL or ``'V' || length || ':' || text``, so neither a NULL, an
    empty string nor a value containing a separator can collide with another row. The text forms of
    timestamps and floats depend on session settings; every adapter pins those settings on each of its
    connections, so the hash does not change when an administrator changes a default.
    """
    if not columns:
        raise ValueError("row_hash_sql needs at least one column")
    prefix = f"{names.quote(alias, what='table alias')}." if alias else ""
    parts: list[str] = []
    for c in columns:
        col = prefix + names.quote(c, what="hashed column")
        txt = _text(names, col)
        encoded = _concat(names, ["'V'", _text(names, f"LENGTH({txt})"), "':'", txt])
        parts.append(f"CASE WHEN {col} IS NULL THEN 'N' ELSE {encoded} END")
    return names.dialect.md5.format(_concat(names, parts))


def now_sql(names: Names) -> str:
    """The current UTC timestamp."""
    return names.dialect.now


def now_epoch_sql(names: Names) -> str:
    """The warehouse's own clock as epoch seconds (a float)."""
    return names.dialect.now_epoch


def age_seconds_sql(names: Names, column_sql: str) -> str:
    """Seconds elapsed since the timestamp expression ``column_sql``."""
    return names.dialect.age_seconds.format(col=column_sql)
