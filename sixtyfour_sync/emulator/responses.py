"""HTTP pieces shared by the emulator's handlers: documented error bodies, JSON answers, uploads to disk."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.wrappers import Request, Response

__all__ = ["DOCUMENTED_DETAILS", "HashingFile", "UploadRequest", "error", "iso", "json_response", "stream_file"]

_MULTIPART_BUFFER = 1 << 20

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


class HashingFile:
    """A temporary upload file that computes the SHA-256 of what is written to it, as it arrives."""

    def __init__(self, directory: Path) -> None:
        # Closed by the request teardown (discard), or moved into the job directory.
        self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115
            "w+b", dir=directory, prefix="upload-", suffix=".part", delete=False
        )
        self._digest = hashlib.sha256()
        self.name: str = self._file.name

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._file.write(data)

    def hexdigest(self) -> str:
        """The SHA-256 of everything written so far."""
        return self._digest.hexdigest()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._file)


class _FormDataParser(FormDataParser):
    # werkzeug reads multipart bodies 64 KiB at a time; 1 MiB costs a sixteenth of the Python overhead.
    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=_MULTIPART_BUFFER,
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class UploadRequest(Request):
    """A request whose multipart file parts stream to disk under ``upload_dir`` (hashed on the way), never
    into memory."""

    # A config of 300,000 characters may take up to 4 bytes each.
    max_form_memory_size = 2 * 1024 * 1024
    max_form_parts = 64
    form_data_parser_class = _FormDataParser
    upload_dir: Path

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return HashingFile(self.upload_dir)  # type: ignore[return-value]


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
