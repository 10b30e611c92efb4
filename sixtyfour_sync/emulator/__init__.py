"""A local emulator of Sixtyfour's Bulk Intelligence API, served over real HTTP (docs/emulator.md).

>>> from sixtyfour_sync.emulator import Emulator, EmulatorSettings
>>> emu = Emulator(EmulatorSettings(api_keys=frozenset({"key"}), job_seconds=0))
>>> with emu.serve(host="127.0.0.1", port=0) as server:  # doctest: +SKIP
...     server.url
'http://127.0.0.1:54321'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.emulator.settings import EmulatorSettings, FaultSettings

if TYPE_CHECKING:
    from sixtyfour_sync.emulator.core import Emulator
    from sixtyfour_sync.emulator.models import InjectedFault, Job, ResultFile, SubmissionRecord, WebhookDelivery
    from sixtyfour_sync.emulator.server import EmulatorServer
    from sixtyfour_sync.emulator.webhooks import sign_payload

__all__ = [
    "Emulator",
    "EmulatorServer",
    "EmulatorSettings",
    "FaultSettings",
    "InjectedFault",
    "Job",
    "ResultFile",
    "SubmissionRecord",
    "WebhookDelivery",
    "sign_payload",
]

# The server side pulls in pyarrow, duckdb and werkzeug: load it on first use, so that every
# command of the CLI (which registers the emulator command) does not pay for it.
_LAZY = {
    "Emulator": "sixtyfour_sync.emulator.core",
    "EmulatorServer": "sixtyfour_sync.emulator.server",
    "InjectedFault": "sixtyfour_sync.emulator.models",
    "Job": "sixtyfour_sync.emulator.models",
    "ResultFile": "sixtyfour_sync.emulator.models",
    "SubmissionRecord": "sixtyfour_sync.emulator.models",
    "WebhookDelivery": "sixtyfour_sync.emulator.models",
    "sign_payload": "sixtyfour_sync.emulator.webhooks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
