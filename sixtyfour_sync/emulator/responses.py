"""HTTP pieces shared by the emulator's handlers: documented error bodies, JSON answers, uploads to disk."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from werkzeug.wrappers import Request, Response

__all__ = ["DOCUMENTED_DETAILS", "UploadRequest", "error", "iso", "json_response", "stream_file"]

#: The documented error bodies, used for real and injected errors alike.
DOCUMENTED_DETAILS: Mapping[int, str] = {
    400: "Invalid request body",
    401: "Invalid API key",
    402: "Insufficient API credits",
    403: "Forbidden",
    404: "Job not found",
    409: "Conflict",
    422: "Unprocessable entity",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )


def error(status: int, detail: Any = None, headers: Mapping[str, str] | None = None) -> Response:
    """``{"detail": ...}`` with the documented text for the status unless ``detail`` is given."""
    body = {"detail": DOCUMENTED_DETAILS.get(status, "Error") if detail is None else detail}
    return json_response(body, status, headers)


class UploadRequest(Request):
    """A request whose multipart file parts stream to disk under ``upload_dir``, never into memory."""

    # A config of 300,000 characters may take up to 4 bytes each.
    max_form_memory_size = 2 * 1024 * 1024
    max_form_parts = 64
    upload_dir: Path

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return tempfile.NamedTemporaryFile("w+b", dir=self.upload_dir, prefix="upload-", suffix=".part", delete=False)


def stream_file(path: Path, limit: int) -> Iterator[bytes]:
    """Up to ``limit`` bytes of a file, 1 MiB at a time."""
    with open(path, "rb") as fh:
        left = limit
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
