"""Any SQLAlchemy URL: MySQL/MariaDB and SQLite tuned and tested, other dialects through a generic path.

``type: sqlalchemy`` takes one ``url``; :class:`SqlAlchemyAdapter` picks its variant from the URL's scheme:
:class:`MySQLAdapter` (:mod:`.mysql`), :class:`SQLiteAdapter` (:mod:`.sqlite`), or the generic classes of
:mod:`.generic` (upper-case folding for Oracle, DB2 and the like).
"""

from __future__ import annotations

from sixtyfour_sync.warehouse.arrow import arrow_from_rows, rows_to_batches
from sixtyfour_sync.warehouse.sqlalchemy.generic import GenericUpperAdapter, SqlAlchemyAdapter
from sixtyfour_sync.warehouse.sqlalchemy.mysql import MySQLAdapter
from sixtyfour_sync.warehouse.sqlalchemy.sqlite import SQLiteAdapter

__all__ = [
    "GenericUpperAdapter",
    "MySQLAdapter",
    "SQLiteAdapter",
    "SqlAlchemyAdapter",
    "arrow_from_rows",
    "rows_to_batches",
    "variant_for",
]


def variant_for(url: str | None) -> type[SqlAlchemyAdapter]:
    """The adapter class for a URL's scheme."""
    scheme = (url or "").split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("mysql", "mariadb"):
        return MySQLAdapter
    if scheme == "sqlite":
        return SQLiteAdapter
    if scheme in ("oracle", "db2", "ibm_db_sa", "snowflake"):
        return GenericUpperAdapter
    return SqlAlchemyAdapter
