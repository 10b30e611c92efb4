"""What comes back to a sync's main thread, as typed values: an API call's answer (from the scheduler's
workers, engine/jobs/scheduler.py) and what the row producer did (engine/rows/extract.py). The main thread owns
the warehouse connection and the ledger, so every event is handled there, in order (engine/runner.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sixtyfour_sync.engine.rows.files import ChunkFile

__all__ = ["ApiAnswer", "Call", "Event", "FileWritten", "ProducerDone", "ProducerFailed", "RowsScanned"]


class Call(enum.Enum):
    """The API calls a job makes; each answer names the call it answers."""

    SUBMIT = "submit"
    POLL = "poll"
    DOWNLOAD = "download"
    CANCEL = "cancel"


@dataclass(frozen=True)
class ApiAnswer:
    """A call's value, or the exception it raised, for ``subject`` (the tracked job)."""

    call: Call
    subject: Any
    value: Any


@dataclass(frozen=True)
class FileWritten:
    """The producer wrote a file of rows to send."""

    chunk: ChunkFile


@dataclass(frozen=True)
class RowsScanned:
    """The producer read this many more rows of the selection."""

    rows: int


@dataclass(frozen=True)
class ProducerDone:
    """The producer read the whole selection (or stopped)."""


@dataclass(frozen=True)
class ProducerFailed:
    """The producer failed; the main thread decides what it means."""

    error: BaseException


Event = ApiAnswer | FileWritten | RowsScanned | ProducerDone | ProducerFailed
