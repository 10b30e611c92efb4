"""A job's downloaded result on local disk: its files' names, what the ledger keeps of them, and their cleanup.

A result may come as several files (every file of the final block: ``output``, ``output.part1``, ...). They
are kept as ``<job id>.<format>`` and ``<job id>.part<i>.<format>`` in the sync's results folder until the
result is merged; the ledger records their names and formats (comma-separated, in part order) with the job's
``downloaded`` state, so a run that stops before the merge merges the same files next time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sixtyfour_sync.api import ResultDownload, ResultPart

__all__ = ["clean_leftovers", "discard", "ledger_values", "settle", "stored_parts"]

#: The download writes each file to a hidden ``.<name>.<random>.part`` file and renames it when complete.
_TEMP_SUFFIX = ".part"


def _name(job_id: str, index: int, fmt: str) -> str:
    return f"{job_id}.{fmt}" if index == 0 else f"{job_id}.part{index}.{fmt}"


def settle(got: ResultDownload, job_id: str) -> ResultDownload:
    """Rename every part of a fresh download to its lasting name (the format known only once downloaded)."""
    parts = []
    for i, part in enumerate(got.all_parts):
        final = part.path.with_name(_name(job_id, i, part.format))
        if part.path != final:
            os.replace(part.path, final)
        parts.append(ResultPart(final, part.format, part.source, part.row_count, part.filename))
    return ResultDownload.from_parts(parts, got.block_number)


def ledger_values(got: ResultDownload) -> dict[str, Any]:
    """What the ledger records of a downloaded result: its files and their formats, in part order."""
    parts = got.all_parts
    return {
        "result_file": ",".join(p.path.name for p in parts),
        "result_format": ",".join(p.format for p in parts),
    }


def stored_parts(results_dir: Path, result_file: str | None, result_format: str | None) -> list[tuple[Path, str]]:
    """The files and formats of a result the ledger recorded; empty when any of them is gone from this machine."""
    if not result_file:
        return []
    names = result_file.split(",")
    formats = (result_format or "csv").split(",")
    formats += [formats[-1]] * (len(names) - len(formats))
    parts = [(results_dir / name, fmt) for name, fmt in zip(names, formats, strict=False)]
    return parts if all(path.is_file() for path, _ in parts) else []


def discard(got: ResultDownload) -> None:
    """Remove a merged result's files."""
    for part in got.all_parts:
        part.path.unlink(missing_ok=True)


def clean_leftovers(results_dir: Path) -> int:
    """Remove the temporary files of downloads a killed run left half-written; returns how many.

    Only the run holding the sync's lease writes here, so at its start no download is under way.
    """
    if not results_dir.is_dir():
        return 0
    removed = 0
    for path in results_dir.iterdir():
        if path.name.startswith(".") and path.name.endswith(_TEMP_SUFFIX) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
