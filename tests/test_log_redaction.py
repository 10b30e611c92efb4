"""Importing the package leaves the process's logging alone; its own loggers and httpx's are redacted."""

from __future__ import annotations

import logging
import subprocess
import sys


def test_importing_the_package_does_not_replace_the_log_record_factory() -> None:
    code = (
        "import logging\n"
        "before = logging.getLogRecordFactory()\n"
        "import sixtyfour_sync, sixtyfour_sync.commands, sixtyfour_sync.cli\n"
        "assert logging.getLogRecordFactory() is before, 'the record factory was replaced'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_package_and_httpx_records_are_redacted_by_their_loggers() -> None:
    from sixtyfour_sync._redact import REDACTED_LOGGERS, redacting_filter, register_secret
    from sixtyfour_sync.api.models import SignedUrl

    register_secret("sk-redaction-test-secret-1234")
    SignedUrl("https://files.example.com/t0ken-in-the-path/result.csv?X-Amz-Signature=abc")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    for name in ("sixtyfour_sync.engine", "httpx"):
        logger = logging.getLogger(name)
        assert redacting_filter() in logger.filters
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        logging.getLogger("sixtyfour_sync.engine").info("key %s", "sk-redaction-test-secret-1234")
        logging.getLogger("httpx").info(
            'HTTP Request: GET %s "HTTP/1.1 200 OK"',
            "https://files.example.com/t0ken-in-the-path/result.csv?X-Amz-Signature=abc",
        )
    finally:
        for name in ("sixtyfour_sync.engine", "httpx"):
            logging.getLogger(name).removeHandler(handler)
    text = "\n".join(r.getMessage() for r in records)
    assert "sk-redaction-test-secret-1234" not in text
    assert "t0ken-in-the-path" not in text and "X-Amz-Signature" not in text
    assert "files.example.com/***" in text
    # every logger the package creates is one the filter is on: import every module, then look
    import importlib
    import pkgutil

    import sixtyfour_sync

    for mod in pkgutil.walk_packages(sixtyfour_sync.__path__, "sixtyfour_sync."):
        try:
            importlib.import_module(mod.name)
        except ImportError:  # an optional extra (dagster, a warehouse driver) that is not installed
            continue

    ours = [n for n in logging.root.manager.loggerDict if n.startswith("sixtyfour_sync")]
    missing = [n for n in ours if redacting_filter() not in logging.getLogger(n).filters]
    assert not missing, f"loggers without redaction: {missing} (add them to REDACTED_LOGGERS)"
    assert "httpcore.http11" in REDACTED_LOGGERS
