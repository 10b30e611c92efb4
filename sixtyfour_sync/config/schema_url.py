"""Where editors find the JSON Schema of sync files (a constant of its own: the command line's start-up reads it
without building the schema)."""

from __future__ import annotations

from sixtyfour_sync._version import __version__

__all__ = ["SCHEMA_FILE", "SCHEMA_URL"]

SCHEMA_FILE = "sync.schema.json"
#: Where editors fetch the schema of this version (the file in the package, as published with the release).
SCHEMA_URL = f"https://raw.githubusercontent.com/sixtyfour-sync/sixtyfour-sync/v{__version__}/sixtyfour_sync/config/{SCHEMA_FILE}"
