"""Log output for humans (text) and schedulers (one JSON object per line)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from sixtyfour_sync._redact import install_log_redaction, redact, redacting_filter

__all__ = ["JsonFormatter", "configure_logging", "error_event", "event"]

logger = logging.getLogger("sixtyfour_sync")

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is event data.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event``/``message`` and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            data["error"] = redact(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return redact(json.dumps(data, default=str, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(fmt: str = "text", *, debug: bool = False, stream: TextIO | None = None) -> None:
    """Set up the root handler once for the CLI: text or JSON lines, secrets redacted."""
    install_log_redaction()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redacting_filter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-5s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Python warnings would print plain text on stderr: under json they become log records (JSON lines) too.
    logging.captureWarnings(fmt == "json")
    # httpx logs every request at INFO: keep that for --debug only.
    for name in ("httpx", "httpcore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    # The engine reports each submission itself; the client's own lines are for --debug.
    logging.getLogger("sixtyfour_sync.api").setLevel(logging.DEBUG if debug else logging.WARNING)


def event(name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a structured event: a readable message for text logs, ``event`` + fields in JSON logs."""
    logger.log(level, message, extra={"event": name, **fields})


def error_event(
    exc: BaseException,
    *,
    exit_code: int,
    kind: str = "error",
    hint: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Write an error as one JSON object on stderr (``--log-format json``): what, where, hint, exit code.

    ``kind`` is ``error`` (a user mistake or a refusal), ``usage``, ``internal`` (a bug), ``abort`` or
    ``interrupt``. Each config problem keeps its file, line, key, message and hint.
    """
    data: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "level": "error",
        "logger": "sixtyfour_sync.cli",
        "event": f"{kind}" if kind != "error" else "error",
        "message": redact(str(exc)),
        "error_type": type(exc).__name__,
        "exit_code": exit_code,
    }
    if kind == "internal":
        data["message"] = redact(f"Internal error ({type(exc).__name__}): {exc}. This is a bug in sixtyfour-sync.")
    if hint:
        data["hint"] = redact(hint)
    if problems:
        data["problems"] = [{k: (redact(v) if isinstance(v, str) else v) for k, v in p.items()} for p in problems]
    out = stream or sys.stderr
    out.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
    out.flush()
