"""sixtyfour-sync: enrich warehouse rows with Sixtyfour's Bulk Intelligence API, safely and resumably."""

from __future__ import annotations

from sixtyfour_sync._redact import install_log_redaction

__version__ = "0.1.0"

install_log_redaction()

__all__ = ["__version__"]
