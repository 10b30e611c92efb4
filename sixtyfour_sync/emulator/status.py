"""What the job endpoints answer: /job-status bodies with signed links, live status, link checks."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import secrets
from typing import Any

from sixtyfour_sync.emulator.models import Job, ResultFile
from sixtyfour_sync.emulator.responses import iso
from sixtyfour_sync.emulator.settings import CREDITS_PER_CENT

__all__ = ["LinkSigner", "live_status", "status_body"]


class LinkSigner:
    """Signs download paths with an expiry (HMAC-SHA256 under a per-process secret) and checks them."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def sign(self, path: str, expires: int) -> str:
        """The hex signature of a path and expiry."""
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def problem(self, path: str, expires_text: str, signature: str, now: float, not_before: float) -> str | None:
        """Why a link is refused (the 403 detail), or None when it is good."""
        if not expires_text.isdigit() or not hmac.compare_digest(signature, self.sign(path, int(expires_text))):
            return "Invalid download signature"
        expires = int(expires_text)
        if expires <= now or expires <= not_before:
            return "Download link expired"
        return None


def _listed(files: list[ResultFile], order: str, task_id: str) -> list[ResultFile]:
    """The files of one block in the order /job-status lists them (``result_parts_order``)."""
    files = sorted(files, key=lambda f: f.part)
    if len(files) < 2 or order == "in_order":
        return files
    if order == "reversed":
        return files[::-1]
    shuffled = files[:]
    random.Random(task_id).shuffle(shuffled)  # the same order on every poll of a job
    if shuffled == files:
        shuffled = shuffled[1:] + shuffled[:1]  # never the part order itself
    return shuffled


def _result_entries(job: Job, base_url: str, signer: LinkSigner, now: float, ttl: int) -> list[dict[str, Any]]:
    expires = max(math.floor(now) + ttl, int(job.links_expire_before) + 1)
    blocks: dict[int, list[ResultFile]] = {}
    for f in job.files:
        blocks.setdefault(f.block_number, []).append(f)
    entries = []
    # Deliberately not in block order: the final output is neither first nor last.
    for block in sorted(blocks, key=lambda b: (b != 2, -b)):
        for f in _listed(blocks[block], job.result_parts_order, job.task_id):
            path = f"/downloads/{job.task_id}/{f.filename}"
            entry: dict[str, Any] = {
                "filename": f.filename,
                "download_url": f"{base_url}{path}?expires={expires}&signature={signer.sign(path, expires)}",
                "block_number": f.block_number,
                "row_count": f.row_count,
                "file_size": f.file_size,
                "content_type": f.content_type,
                "created_at": iso(f.created_at),
                "download_expires_in_seconds": max(0, int(expires - now)),
            }
            if f.preview is not None:
                entry["results"] = f.preview
            entries.append(entry)
    return entries


def status_body(
    job: Job,
    base_url: str,
    signer: LinkSigner,
    *,
    now: float,
    download_ttl_seconds: int,
    cost_units: str | None = None,
) -> dict[str, Any]:
    """The /job-status answer for a job (fresh signed links on every call)."""
    body: dict[str, Any] = {
        "id": job.task_id,
        "run_id": job.run_id,
        "start_time": iso(job.created_at),
        "status": job.status,
    }
    if job.closed_at is not None:
        body["close_time"] = iso(job.closed_at)
    if job.status == "completed":
        body["results"] = _result_entries(job, base_url, signer, now, download_ttl_seconds)
        if (cost_units or job.cost_units) == "credits":
            body["charge_credits"] = round((job.charge_cents or 0) * CREDITS_PER_CENT, 6)
        else:
            body["charge_amount"] = job.charge_cents
    elif job.error:
        body["error"] = job.error
    return body


def live_status(job: Job, now: float) -> dict[str, Any]:
    """Per-block progress: three blocks advancing over the job's duration, 99% until it completes."""
    total = job.row_count
    if job.status == "completed":
        fraction = 1.0
    else:
        end = job.closed_at if job.closed_at is not None else now
        span = max(job.due_at - job.created_at, 1e-9)
        fraction = min(1.0, max(0.0, (end - job.created_at) / span))
        if job.status == "running":
            fraction = min(fraction, 0.99)
    blocks = []
    names = ("ingest", "research", "enrich")
    for i, name in enumerate(names):
        share = min(1.0, max(0.0, fraction * len(names) - i))
        done = total if job.status == "completed" else math.floor(total * share)
        state = "completed" if done == total else ("running" if done or share > 0 else "pending")
        if job.status in ("failed", "cancelled") and done < total:
            state = job.status
        blocks.append(
            {"block_number": i + 1, "name": name, "status": state, "processed_count": done, "total_count": total}
        )
    return {
        "run_id": job.task_id,
        "overall_status": job.status,
        "overall_progress_percentage": round(100.0 * fraction, 1),
        "blocks": blocks,
    }
