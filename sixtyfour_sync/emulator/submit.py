"""``POST /bulk-intelligence/{people,company}``: the checks in their documented order, then a new job.

Order (docs/emulator.md): Idempotency-Key 400, ``cost_units`` 422, body size 413, missing parts 422,
replay, submission limit 429, file size 413, config 422, file type and parse 400, row count 413,
``columns`` 422, tier 403, balance 402. The file streams to disk; parsing writes an Arrow IPC file
a block at a time, so nothing holds the whole upload in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from sixtyfour_sync.emulator.accounts import Accounts, IdempotencyHit, Org
from sixtyfour_sync.emulator.models import Job
from sixtyfour_sync.emulator.responses import DOCUMENTED_DETAILS, HashingFile, error, json_response
from sixtyfour_sync.emulator.settings import CREDITS_PER_CENT, EmulatorSettings
from sixtyfour_sync.emulator.uploads import FORMATS, ParsedUpload, UploadError, parse_upload
from sixtyfour_sync.emulator.validation import check_columns, parse_config, validate_config

__all__ = ["SubmitHandler"]

_HIGH_TIER = "High tier {endpoint} enrichment is not enabled for this org. Contact sales to request access."


class _Rejected(Exception):
    """A submission refused with this response; ``detail`` goes into the submission record."""

    def __init__(self, response: Response, detail: Any) -> None:
        super().__init__(detail)
        self.response = response
        self.detail = detail if isinstance(detail, str) else json.dumps(detail)


def _reject(status: int, detail: Any = None, headers: Mapping[str, str] | None = None) -> _Rejected:
    shown = DOCUMENTED_DETAILS[status] if detail is None else detail
    return _Rejected(error(status, detail, headers), shown)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SubmitHandler:
    """Turns an accepted submission into a :class:`Job`; ``register`` adds it to the emulator."""

    def __init__(
        self,
        settings: EmulatorSettings,
        accounts: Accounts,
        data_dir: Path,
        register: Callable[[Job], None],
        find: Callable[[str], Job | None],
        heavy: threading.BoundedSemaphore | None = None,
    ) -> None:
        self.settings = settings
        # Parsing (and output generation, elsewhere) take this: one file's working set in memory at a time.
        self._heavy = heavy or threading.BoundedSemaphore(1)
        self.accounts = accounts
        self.data_dir = data_dir
        self._register = register
        self._find = find

    def __call__(self, endpoint: str, request: Request, org: Org, record: dict[str, Any]) -> Response:
        """Answer one submission; ``record`` collects what the submission record shows."""
        try:
            return self._submit(endpoint, request, org, record)
        except _Rejected as rejected:
            record["detail"] = rejected.detail
            return rejected.response

    def _read_parts(self, request: Request) -> tuple[FileStorage, str]:
        settings = self.settings
        bound = settings.max_file_bytes + 4 * settings.max_config_chars + (1 << 20)
        if request.content_length is not None and request.content_length > bound:
            raise _reject(
                413,
                f"Request body is {request.content_length:,} bytes; "
                f"the file limit is {settings.max_file_bytes:,} bytes",
            )
        try:
            storage = request.files.get("file")
            config_text = request.form.get("config")
            if config_text is None and "config" in request.files:
                config_text = request.files["config"].read(4 * settings.max_config_chars + 1).decode("utf-8")
        except (ValueError, HTTPException, UnicodeDecodeError):
            raise _reject(400) from None
        missing = []
        if storage is None:
            missing.append({"loc": ["body", "file"], "msg": "Field required", "type": "missing"})
        if config_text is None:
            missing.append({"loc": ["body", "config"], "msg": "Field required", "type": "missing"})
        if missing or storage is None or config_text is None:
            raise _reject(422, missing)
        return storage, config_text

    def _submit(self, endpoint: str, request: Request, org: Org, record: dict[str, Any]) -> Response:
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not 1 <= len(idem) <= 255:
            raise _reject(400, f"Idempotency-Key must be 1 to 255 characters; got {len(idem)}")
        cost_units = request.args.get("cost_units", "cents")
        if cost_units not in ("cents", "credits"):
            raise _reject(
                422, [{"loc": ["query", "cost_units"], "msg": "Input should be 'cents' or 'credits'", "type": "enum"}]
            )
        storage, config_text = self._read_parts(request)
        upload = Path(storage.stream.name)
        storage.stream.flush()
        digest = storage.stream.hexdigest() if isinstance(storage.stream, HashingFile) else _sha256(upload)
        record["file_sha256"] = digest
        with org.submit_lock:  # one submission at a time per organisation: replays stay exact
            now = self.settings.clock()
            if idem is not None:
                hit = self.accounts.recall(org.org_id, endpoint, idem, now)
                if hit is not None:
                    return self._replay(hit, digest, record)
            job = self._accept(endpoint, storage, upload, config_text, org, idem, digest, cost_units, now, record)
        body: dict[str, Any] = {"task_id": job.task_id, "status": "RUNNING", "row_count": job.row_count}
        if cost_units == "credits":
            body["estimated_cost_credits"] = round(job.estimate_cents * CREDITS_PER_CENT, 6)
        else:
            body["estimated_cost_cents"] = job.estimate_cents
        return json_response(body)

    def _replay(self, hit: IdempotencyHit, digest: str, record: dict[str, Any]) -> Response:
        if hit.file_sha256 != digest:
            raise _reject(422, "Idempotency-Key was already used with a different file")
        job = self._find(hit.task_id)
        record.update(task_id=hit.task_id, replay=True, row_count=job.row_count if job is not None else None)
        return json_response({"task_id": hit.task_id, "status": "RUNNING", "already_started": True})

    def _parse(self, storage: FileStorage, upload: Path, dest: Path) -> tuple[ParsedUpload, str]:
        name = storage.filename or ""
        ext = os.path.splitext(name)[1].lower()
        if ext not in FORMATS:
            raise _reject(
                400,
                f"Unsupported file type '{ext or name}': upload a .csv, .json, .jsonl or .ndjson file"
                if name
                else "The file part has no filename; name it .csv, .json, .jsonl or .ndjson",
            )
        try:
            with self._heavy:
                return parse_upload(upload, FORMATS[ext], os.path.basename(name), dest), ext
        except UploadError as exc:
            raise _reject(400, str(exc)) from None

    def _accept(
        self,
        endpoint: str,
        storage: FileStorage,
        upload: Path,
        config_text: str,
        org: Org,
        idem: str | None,
        digest: str,
        cost_units: str,
        now: float,
        record: dict[str, Any],
    ) -> Job:
        settings = self.settings
        wait = self.accounts.submit_wait(org, settings.rate_limit_per_minute, now)
        if wait is not None:
            raise _reject(429, headers={"Retry-After": str(wait)})
        size = upload.stat().st_size
        if size > settings.max_file_bytes:
            raise _reject(413, f"File is {size:,} bytes; the limit is {settings.max_file_bytes:,} bytes per file")
        config, errors = parse_config(config_text, settings.max_config_chars)
        if config is not None:
            errors = validate_config(config, endpoint, allow_insecure_webhooks=settings.allow_insecure_webhooks)
        if errors or config is None:
            raise _reject(422, errors)
        task_id = str(uuid.uuid4())
        job_dir = self.data_dir / "jobs" / task_id
        job_dir.mkdir(parents=True)
        try:
            parsed, ext = self._parse(storage, upload, job_dir / "parsed.arrow")
            record["row_count"] = parsed.rows
            if parsed.rows > settings.max_rows:
                raise _reject(413, f"File has {parsed.rows:,} rows; the limit is {settings.max_rows:,} rows per file")
            errors = check_columns(config.get("columns"), parsed.columns)
            if errors:
                raise _reject(422, errors)
            tier = config.get("tier", "low")
            if tier == "high" and not org.high_tier:
                raise _reject(403, _HIGH_TIER.format(endpoint=endpoint))
            price = int(settings.prices_cents[tier])
            estimate = parsed.rows * price
            if not self.accounts.hold(org, estimate, now):
                raise _reject(402)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        stored = job_dir / f"upload{ext}"
        storage.stream.close()
        os.replace(upload, stored)
        job = Job(
            task_id=task_id,
            run_id=str(uuid.uuid4()),
            endpoint=endpoint,
            tier=tier,
            org_id=org.org_id,
            row_count=parsed.rows,
            price_cents=price,
            estimate_cents=estimate,
            config=config,
            upload_path=stored,
            upload_format=FORMATS[ext],
            upload_name=os.path.basename(storage.filename or ""),
            file_sha256=digest,
            idempotency_key=idem,
            cost_units=cost_units,
            created_at=now,
            due_at=now + settings.job_seconds,
            result_parts=settings.result_parts,
            result_parts_order=settings.result_parts_order,
        )
        self._register(job)
        if idem is not None:
            self.accounts.remember(org.org_id, endpoint, idem, IdempotencyHit(task_id, digest, now))
        record.update(task_id=task_id, replay=False)
        return job
