"""Downloading a job's result: every file of its final block, each signed link fetched with the key, refreshed
when it expired or was refused, checked complete, and renamed into place only once every part is (the
:class:`ResultDownloads` part of :class:`~sixtyfour_sync.api.client.SixtyfourClient`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.api.errors import (
    ApiConnectionError,
    ApiError,
    DownloadError,
    error_from_response,
)
from sixtyfour_sync.api.models import (
    JobStatus,
    ResultDownload,
    ResultFile,
    ResultPart,
)
from sixtyfour_sync.api.retry import RetryPolicy, parse_retry_after, should_retry

log = logging.getLogger("sixtyfour_sync.api")

#: A link within this many seconds of its expiry is refreshed before use rather than tried.
LINK_EXPIRY_MARGIN = 30.0
_REFRESHABLE_LINK_STATUSES = frozenset({401, 403, 404, 410})
_COPY_CHUNK = 1 << 20


def _part_keys(entries: Sequence[ResultFile]) -> tuple[str, ...]:
    """How each part is recognised in a later poll: by file name when every part has its own, else by position."""
    names = [e.filename for e in entries]
    if all(names) and len(set(names)) == len(names):
        return tuple(f"name:{n}" for n in names)
    return tuple(f"position:{i}" for i in range(len(entries)))


def _part_label(index: int, total: int, entry: ResultFile) -> str:
    """How messages name a part: ``the result`` when it is the only one, else its place and file name."""
    if total == 1:
        return "the result"
    name = f" ({sanitize(entry.filename, 120)})" if entry.filename else ""
    return f"file {index + 1} of {total}{name} of the result"


def _discard(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _result_format(entry: ResultFile, response_type: str | None) -> str:
    """``csv``, ``jsonl`` or ``json``: from the entry's content type, its filename, then the response."""
    for ctype in (entry.content_type, response_type):
        if not ctype:
            continue
        media = ctype.split(";", 1)[0].strip().lower()
        if media in ("text/csv", "application/csv") or media.endswith("+csv"):
            return "csv"
        if "ndjson" in media or "jsonl" in media or "json-seq" in media:
            return "jsonl"
        if media == "application/json" or media.endswith("+json"):
            return "json"
        if entry.filename:
            break  # an unhelpful content type (octet-stream...): the file name decides
    if entry.filename:
        suffix = Path(entry.filename).suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if suffix == ".json":
            return "json"
    return "csv"  # the API's default result format


def _final_entries(status: JobStatus, task_id: str) -> Sequence[ResultFile]:
    """The files of the job's final result; :class:`DownloadError` when the job has none to give."""
    if not status.is_completed:
        raise DownloadError(f"job {task_id} is {status.status}: only a completed job has results")
    entries = status.final_results
    if not entries:
        raise DownloadError(f"job {task_id} completed but lists no result files")
    return entries


def _count_restart(task_id: str, now: int, before: int, restarts: int, max_refreshes: int) -> int:
    """The restart count after the result's files changed between polls; :class:`DownloadError` past the limit."""
    if restarts >= max_refreshes:
        raise DownloadError(
            f"the result files of job {task_id} changed between polls {restarts + 1} times "
            f"(now {now} file(s)): giving up"
        )
    log.info(
        "job %s: the result's files changed between polls (%d now, %d before); starting over", task_id, now, before
    )
    return restarts + 1


def _count_refresh(
    polls: dict[str, int], key: str, task_id: str, label: str, problem: str, total: int, max_refreshes: int
) -> None:
    """Count one more link refresh caused by the part ``key``; :class:`DownloadError` past the limit."""
    used = polls.get(key, 0)
    if used >= max_refreshes:
        raise DownloadError(f"{label} of job {task_id} could not be downloaded after {used} link refreshes: {problem}")
    polls[key] = used + 1
    where = "" if total == 1 else f"{label}: "
    log.info("job %s: %s%s; polling for fresh links (%d of %d)", task_id, where, problem, used + 1, max_refreshes)


def _place_parts(
    entries: Sequence[ResultFile], staged: dict[int, tuple[Path, ResultPart]], placed: list[Path], task_id: str
) -> ResultDownload:
    """Rename every staged part into place, in order (each moved from ``staged`` to ``placed`` as it goes)."""
    parts = []
    for index in range(len(entries)):
        tmp, part = staged[index]
        os.replace(tmp, part.path)
        del staged[index]
        placed.append(part.path)
        parts.append(part)
    if len(parts) > 1:
        log.info("job %s: result saved in %d files", task_id, len(parts))
    return ResultDownload.from_parts(parts, entries[0].block_number)


class ResultDownloads:
    """The client's result downloads; the rest of the client (its HTTP client, retries, clocks, ``job_status``)
    is :class:`~sixtyfour_sync.api.client.SixtyfourClient`'s."""

    _http: httpx.Client
    _retry: RetryPolicy
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]

    def job_status(self, task_id: str) -> JobStatus:  # pragma: no cover - the client's
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:  # pragma: no cover - the client's
        raise NotImplementedError

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> ApiError:  # pragma: no cover - the client's
        raise NotImplementedError

    def _wait_before_retry(self, attempt: int, error: ApiError) -> None:  # pragma: no cover - the client's
        raise NotImplementedError

    def download_result(
        self, task_id_or_status: str | JobStatus, dest: Path | str, *, max_refreshes: int = 3
    ) -> ResultDownload:
        """Save every file of the job's final result (the highest block number) at ``dest`` and beside it.

        The final block may be split into several files (``output``, ``output.part1``...): part 0 is saved at
        ``dest``, part ``i`` at ``dest.parent / f"{dest.name}.part{i}"``, and the answer lists every part in order
        (:attr:`ResultDownload.all_parts`): a reader must read and concatenate them all.

        A part whose rows come inline (a small file) is written as JSONL with no download. Any other part's
        signed link is fetched with the key and without following redirects, streamed to a temp file beside
        its destination (``.{name}.<random>.part``) and checked complete (Content-Length, the listed file size);
        the parts are renamed into place once every one is complete. Transient failures and truncated bodies
        are retried per the retry policy.

        A refused, redirected, expired or missing link is replaced by polling the job again and going on with
        the fresh link of the same part (matched by file name, else by position); parts already fetched are
        not fetched again. Each part may cause at most ``max_refreshes`` polls. When a poll lists other
        files (another count or other names), the download starts over, at most ``max_refreshes`` times.
        Then :class:`DownloadError`. When the call raises, it leaves nothing behind: no temp file and no part.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        given = task_id_or_status
        status = given if isinstance(given, JobStatus) else self.job_status(given)
        task_id = status.task_id
        staged: dict[int, tuple[Path, ResultPart]] = {}  # part index -> (its complete temp file, the part)
        placed: list[Path] = []
        polls: dict[str, int] = {}  # part key -> polls it caused
        restarts = 0
        layout: tuple[int | None, tuple[str, ...]] | None = None
        try:
            while True:
                entries = _final_entries(status, task_id)
                keys = _part_keys(entries)
                shape = (entries[0].block_number, keys)
                if layout is not None and shape != layout:
                    restarts = _count_restart(task_id, len(entries), len(layout[1]), restarts, max_refreshes)
                    _discard(path for path, _ in staged.values())
                    staged.clear()
                layout = shape
                failed = self._stage_parts(entries, status, dest, task_id, staged)
                if failed is None:
                    return _place_parts(entries, staged, placed, task_id)
                index, problem = failed
                label = _part_label(index, len(entries), entries[index])
                _count_refresh(polls, keys[index], task_id, label, problem, len(entries), max_refreshes)
                status = self.job_status(task_id)
        except BaseException:
            # Nothing of a failed call stays: neither temp files nor parts already in place (a mix of old and
            # new parts, or some parts without the others, would look like a complete result).
            _discard([*(path for path, _ in staged.values()), *placed])
            raise

    def _stage_parts(
        self,
        entries: Sequence[ResultFile],
        status: JobStatus,
        dest: Path,
        task_id: str,
        staged: dict[int, tuple[Path, ResultPart]],
    ) -> tuple[int, str] | None:
        """Stage every part not yet in ``staged`` (inline rows written, links fetched), in order; stop at the
        first part that cannot be fetched and answer its index and the problem, else ``None``."""
        for index, entry in enumerate(entries):
            if index in staged:
                continue
            label = _part_label(index, len(entries), entry)
            target = dest if index == 0 else dest.with_name(f"{dest.name}.part{index}")
            rows = entry.preview_rows
            if rows is not None and (entry.row_count is None or entry.row_count == len(rows)):
                staged[index] = self._write_inline(rows, target, entry)
                continue
            problem = self._link_problem(entry, status)
            if problem is None:
                outcome = self._fetch(entry, target, task_id, label)
                if not isinstance(outcome, str):
                    staged[index] = outcome
                    continue
                problem = outcome
            return index, problem
        return None

    def _link_problem(self, entry: ResultFile, status: JobStatus) -> str | None:
        if entry.download_url is None:
            return "the final result has no download link"
        if entry.expires_in is not None and status.fetched_at is not None:
            age = self._clock() - status.fetched_at
            if age >= entry.expires_in - LINK_EXPIRY_MARGIN:
                return f"the download link has expired (issued {age:.0f} s ago)"
        return None

    @staticmethod
    def _write_inline(rows: list[dict[str, Any]], target: Path, entry: ResultFile) -> tuple[Path, ResultPart]:
        """Write preview rows as JSONL to a temp file beside ``target``; return it and the part it becomes."""
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    out.write("\n")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return Path(tmp), ResultPart(target, "jsonl", "inline", len(rows), entry.filename)

    def _fetch(self, entry: ResultFile, target: Path, task_id: str, label: str) -> tuple[Path, ResultPart] | str:
        """Download one link with retries into a complete temp file beside ``target``; return it and the part it
        becomes. A str result names a link problem a refresh may cure."""
        assert entry.download_url is not None
        url = entry.download_url.get()
        what = f"download of {label} of job {task_id}"
        for attempt in count(1):
            tmp: str | None = None
            cause: BaseException | None = None
            try:
                with self._http.stream("GET", url, headers=self._headers(), follow_redirects=False) as resp:
                    code = resp.status_code
                    if 300 <= code < 400:
                        return f"the download link answered HTTP {code} (a redirect, not followed)"
                    if code in _REFRESHABLE_LINK_STATUSES:
                        resp.read()
                        error = error_from_response(resp, what=what)
                        return f"the download link was refused: {error.detail or code}"
                    if not resp.is_success:
                        resp.read()
                        retry_after = parse_retry_after(resp.headers.get("retry-after"), now=self._wall_clock())
                        error = error_from_response(resp, retry_after=retry_after, what=what)
                        if not should_retry(code):
                            raise DownloadError(str(error), status_code=code, detail=error.detail) from error
                    else:
                        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
                        with os.fdopen(fd, "wb") as out:
                            for chunk in resp.iter_bytes(_COPY_CHUNK):
                                out.write(chunk)
                            out.flush()
                            os.fsync(out.fileno())
                        shortfall = self._shortfall(resp, entry, Path(tmp))
                        if shortfall is None:
                            done = Path(tmp)
                            tmp = None
                            fmt = _result_format(entry, resp.headers.get("content-type"))
                            return done, ResultPart(target, fmt, "download", entry.row_count, entry.filename)
                        error = ApiConnectionError(f"{what}: truncated body ({shortfall})")
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                return f"the download link is not a usable URL ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                cause = exc
                error = self._transport_error(exc, what)
                if not should_retry(None, exc):
                    raise DownloadError(str(error)) from exc
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
            if attempt >= self._retry.max_attempts:
                raise DownloadError(f"{what} failed after {attempt} attempts: {error}") from (cause or error)
            self._wait_before_retry(attempt, error)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _shortfall(resp: httpx.Response, entry: ResultFile, tmp: Path) -> str | None:
        """Why the body looks incomplete, or None when it is whole as far as anyone can tell."""
        written = tmp.stat().st_size
        encoded = resp.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
        # Content-Length counts bytes on the wire: compressed ones when the transfer was encoded.
        received = resp.num_bytes_downloaded if encoded else written
        header = resp.headers.get("content-length")
        if header is not None and header.strip().isdigit() and received < int(header):
            return f"{received:,} of {int(header):,} bytes"
        listed = entry.file_size
        # A compressed transfer's byte count says nothing about the file's size on the server.
        if listed is None or encoded:
            return None
        if written < listed:
            return f"{written:,} of the {listed:,} bytes the job lists"
        if written > listed:
            log.warning("result file %s is %d bytes, the job listed %d: keeping it", entry.filename, written, listed)
        return None
