"""Typed views of the API's answers.

Every key the API documents is optional here: the API may omit or add keys, and a missing one must
never crash a run. ``raw`` keeps the full answer for the ledger and for debugging.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sixtyfour_sync._redact import redact_url, register_link_path

__all__ = [
    "RUNNING",
    "TERMINAL_STATUSES",
    "Balance",
    "BlockProgress",
    "CancelResult",
    "JobStatus",
    "LiveStatus",
    "ResultDownload",
    "ResultFile",
    "ResultPart",
    "SignedUrl",
    "SubmitResult",
    "final_result",
    "final_results",
    "is_terminal_status",
    "normalize_status",
    "part_number",
]

RUNNING = "running"
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "terminated", "timed_out"})


def normalize_status(status: object) -> str:
    """Lower-case, trimmed status text; a missing status counts as running."""
    if not isinstance(status, str) or not status.strip():
        return RUNNING
    return status.strip().lower()


def is_terminal_status(status: object) -> bool:
    """True when the status ends a job; unknown statuses (e.g. ``continued_as_new``) are still running."""
    return normalize_status(status) in TERMINAL_STATUSES


def _int(value: object) -> int | None:
    """An integer from a JSON value, or None when absent or not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _str(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


class SignedUrl:
    """A signed download link: a bearer credential, so it never prints itself in full.

    ``str``/``repr`` show scheme, host and path only; :meth:`get` returns the real URL for the request.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url
        with contextlib.suppress(ValueError):
            register_link_path(urlsplit(url).path)

    def get(self) -> str:
        """The full URL, for the download request only."""
        return self._url

    def __str__(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"SignedUrl({redact_url(self._url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignedUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(("SignedUrl", self._url))


@dataclass(frozen=True)
class SubmitResult:
    """The answer to a submission. A replay (same Idempotency-Key) names the original job and omits
    ``row_count`` and the estimate, since the original upload is authoritative."""

    task_id: str
    status: str
    row_count: int | None
    estimated_cost_cents: int | None
    estimated_cost_credits: float | None
    already_started: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    #: An earlier attempt of this same call may have reached the API (a timeout, a dropped connection, a 5xx):
    #: a replay may then answer our own upload, not another submitter's.
    earlier_attempt: bool = False

    @property
    def is_replay(self) -> bool:
        """True when the API returned an earlier job for this Idempotency-Key."""
        return self.already_started

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SubmitResult:
        """Build from the JSON answer; the caller has checked ``task_id`` is present."""
        row_count = _int(data.get("row_count"))
        cents = _int(data.get("estimated_cost_cents"))
        credits = _float(data.get("estimated_cost_credits"))
        # The doc promises already_started on replays; an answer without any count or estimate is
        # treated the same way, because it cannot be a fresh job's answer.
        no_counts = row_count is None and cents is None and credits is None
        replay = data.get("already_started") is True or no_counts
        return cls(
            task_id=str(data["task_id"]),
            status=normalize_status(data.get("status")),
            row_count=row_count,
            estimated_cost_cents=cents,
            estimated_cost_credits=credits,
            already_started=replay,
            raw=dict(data),
        )


@dataclass(frozen=True)
class ResultFile:
    """One pipeline stage's output file, as listed in a completed job's ``results``."""

    filename: str | None = None
    download_url: SignedUrl | None = None
    block_number: int | None = None
    row_count: int | None = None
    file_size: int | None = None
    content_type: str | None = None
    created_at: str | None = None
    expires_in: int | None = None
    preview_rows: list[dict[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ResultFile:
        """Build from one ``results`` entry, tolerating missing or oddly typed keys."""
        url = data.get("download_url")
        preview = data.get("results")
        rows: list[dict[str, Any]] | None = None
        if isinstance(preview, list) and all(isinstance(r, Mapping) for r in preview):
            rows = [dict(r) for r in preview]
        return cls(
            filename=_str(data.get("filename")),
            download_url=SignedUrl(url) if isinstance(url, str) and url.strip() else None,
            block_number=_int(data.get("block_number")),
            row_count=_int(data.get("row_count")),
            file_size=_int(data.get("file_size")),
            content_type=_str(data.get("content_type")),
            created_at=_str(data.get("created_at")),
            expires_in=_int(data.get("download_expires_in_seconds", data.get("expires_in"))),
            preview_rows=rows,
        )


#: A part number in a file name: ``X.part1``, ``X.part1.csv``, ``part-00001.csv``, ``X_part_2.csv``. The
#: marker starts the name or follows ``.``, ``_`` or ``-``; only extensions may follow the number; the last
#: such marker counts.
_PART_NUMBER = re.compile(r"(?:.*[._-])?part[._-]?(\d+)(?:\.[A-Za-z0-9]+)*", re.IGNORECASE | re.DOTALL)


def part_number(filename: str | None) -> int:
    """The part number a result file's name carries; 0 for a name without one (``output``, ``X.csv``)."""
    if not filename:
        return 0
    match = _PART_NUMBER.fullmatch(filename)
    return int(match.group(1)) if match else 0


def final_results(results: Sequence[ResultFile]) -> list[ResultFile]:
    """Every file of the final enriched output: the entries of the highest ``block_number``, as parts in order.

    The API may split the final block into several files (``output``, ``output.part1``, ``output.part2``...):
    all of them together are the output. Entries without a block number count only when none has one.
    Order: the part number in the file name (:func:`part_number`; a name without one is part 0), then the
    file name, then the position in the list, so the same files in any list order give the same parts.
    Empty when the list is.
    """
    numbered = [e.block_number for e in results if e.block_number is not None]
    top = max(numbered) if numbered else None
    finals = [(i, e) for i, e in enumerate(results) if e.block_number == top]
    finals.sort(key=lambda item: (part_number(item[1].filename), item[1].filename or "", item[0]))
    return [e for _, e in finals]


def final_result(results: Sequence[ResultFile]) -> ResultFile | None:
    """The first file of the final enriched output (see :func:`final_results` for all of them).

    None when the list is empty.
    """
    parts = final_results(results)
    return parts[0] if parts else None


@dataclass(frozen=True)
class JobStatus:
    """A job's state from ``GET /job-status/{task_id}``; ``status`` is lower-cased."""

    task_id: str
    status: str
    is_terminal: bool
    is_completed: bool
    results: list[ResultFile]
    charge_amount_cents: int | None
    charge_credits: float | None
    error: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    #: The client's monotonic clock when this answer arrived (signed links expire relative to it).
    fetched_at: float | None = field(default=None, compare=False)

    @property
    def is_failed(self) -> bool:
        """Terminal but not completed: failed, cancelled, terminated or timed out."""
        return self.is_terminal and not self.is_completed

    @property
    def final_result(self) -> ResultFile | None:
        """The first file of the final enriched output (highest block number), if the job lists any."""
        return final_result(self.results)

    @property
    def final_results(self) -> list[ResultFile]:
        """Every file of the final enriched output (highest block number), as parts in order."""
        return final_results(self.results)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, task_id: str, fetched_at: float | None = None) -> JobStatus:
        """Build from the JSON answer, tolerating missing keys."""
        status = normalize_status(data.get("status"))
        entries = data.get("results")
        results = (
            [ResultFile.from_api(e) for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []
        )
        error = data.get("error") or data.get("error_message")
        if not error and status != "completed":
            error = data.get("message")  # some workflow states explain themselves here
        return cls(
            task_id=str(data.get("id") or data.get("task_id") or task_id),
            status=status,
            is_terminal=status in TERMINAL_STATUSES,
            is_completed=status == "completed",
            results=results,
            charge_amount_cents=_int(data.get("charge_amount")),
            charge_credits=_float(data.get("charge_credits")),
            error=_str(error) if error else None,
            raw=dict(data),
            fetched_at=fetched_at,
        )


@dataclass(frozen=True)
class BlockProgress:
    """Progress of one pipeline block while a job runs."""

    name: str | None
    status: str | None
    processed_count: int | None
    total_count: int | None


@dataclass(frozen=True)
class LiveStatus:
    """Per-block progress from ``GET /workflows/runs/{task_id}/live_status``."""

    task_id: str
    overall_status: str
    progress_percentage: float | None
    blocks: list[BlockProgress]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, task_id: str) -> LiveStatus:
        """Build from the JSON answer, tolerating missing keys."""
        blocks = []
        for b in data.get("blocks") or []:
            if not isinstance(b, Mapping):
                continue
            name = b.get("name", b.get("block_name", b.get("block_number")))
            blocks.append(
                BlockProgress(
                    name=_str(name),
                    status=normalize_status(b["status"]) if isinstance(b.get("status"), str) else None,
                    processed_count=_int(b.get("processed_count")),
                    total_count=_int(b.get("total_count")),
                )
            )
        return cls(
            task_id=task_id,
            overall_status=normalize_status(data.get("overall_status", data.get("status"))),
            progress_percentage=_float(data.get("overall_progress_percentage")),
            blocks=blocks,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Balance:
    """The organisation's balance from ``GET /check-balance``."""

    credits: float | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Balance:
        """Build from the JSON answer."""
        return cls(credits=_float(data.get("credits")), raw=dict(data))


@dataclass(frozen=True)
class CancelResult:
    """The answer to ``POST /workflows/cancel``."""

    job_id: str
    status: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, task_id: str) -> CancelResult:
        """Build from the JSON answer."""
        return cls(
            job_id=str(data.get("job_id") or task_id),
            status=normalize_status(data.get("status")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ResultPart:
    """One file of a downloaded result, complete on local disk."""

    path: Path
    #: ``csv``, ``jsonl`` or ``json``
    format: str
    #: ``download`` (fetched from the signed link) or ``inline`` (written from the preview rows)
    source: str
    row_count: int | None
    #: The file name the job listed, if any.
    filename: str | None = None


@dataclass(frozen=True)
class ResultDownload:
    """A job's result on local disk, complete: every file of its final block, each written to a temp file and
    renamed into place.

    ``path``, ``format`` and ``source`` describe the first part; ``parts`` lists every part in order (empty
    when built by hand for one file: :attr:`all_parts` covers both). ``row_count`` is the sum of the parts'
    row counts when every one is known, else None. A reader must read and concatenate every part.
    """

    path: Path
    #: ``csv``, ``jsonl`` or ``json``
    format: str
    #: ``download`` (fetched from the signed link) or ``inline`` (written from the preview rows)
    source: str
    row_count: int | None
    block_number: int | None
    parts: tuple[ResultPart, ...] = ()

    @property
    def all_parts(self) -> tuple[ResultPart, ...]:
        """Every part in order: ``parts``, or when empty the one file ``path`` describes."""
        if self.parts:
            return self.parts
        return (ResultPart(self.path, self.format, self.source, self.row_count),)

    @classmethod
    def from_parts(cls, parts: Sequence[ResultPart], block_number: int | None) -> ResultDownload:
        """The download of these parts (at least one), described by its first."""
        if not parts:
            raise ValueError("a result download has at least one part")
        counts = [p.row_count for p in parts]
        total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        first = parts[0]
        return cls(first.path, first.format, first.source, total, block_number, tuple(parts))
