"""The /_emulator/ admin endpoints: test controls over HTTP, for an emulator in another process (no key needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sixtyfour_sync.emulator.models import InjectedFault, Job, SubmissionRecord, WebhookDelivery
from sixtyfour_sync.emulator.responses import error, json_response

__all__ = ["AdminControls", "admin_response", "admin_routes"]


class AdminControls(Protocol):
    """What the admin endpoints drive: the emulator's public test controls."""

    jobs: dict[str, Job]
    submissions: list[SubmissionRecord]
    webhook_deliveries: list[WebhookDelivery]

    def complete(self, task_id: str) -> Job: ...
    def fail(self, task_id: str, message: str = ...) -> Job: ...
    def cancel_job(self, task_id: str) -> Job: ...
    def expire_links(self, task_id: str) -> None: ...
    def forget_job(self, task_id: str) -> Job: ...
    def corrupt_result(self, task_id: str, data: bytes, part: int = ...) -> Job: ...
    def split_result(self, task_id: str, parts: int, order: Any = ...) -> Job: ...
    def drop_result_columns(self, task_id: str, names: Sequence[str]) -> Job: ...
    def forget_idempotency_keys(self) -> int: ...
    def add_key(self, api_key: str, *, same_org_as: str | None = None) -> None: ...
    def revoke_key(self, api_key: str) -> None: ...
    def inject(
        self,
        method: str,
        path_prefix: str,
        status: int | None = None,
        *,
        times: int = ...,
        drop: bool = ...,
        delay: float = ...,
        truncate: bool = ...,
        retry_after: float | None = ...,
        phase: str = ...,
    ) -> InjectedFault: ...


def admin_routes() -> list[Rule]:
    """The admin routes (endpoints named ``admin_*``)."""
    actions = "complete, fail, cancel, 'expire-links', forget, corrupt, 'drop-columns', split"
    return [
        Rule("/_emulator/health", methods=["GET"], endpoint="admin_health"),
        Rule("/_emulator/submissions", methods=["GET"], endpoint="admin_submissions"),
        Rule("/_emulator/jobs", methods=["GET"], endpoint="admin_jobs"),
        Rule("/_emulator/jobs/<task_id>", methods=["GET"], endpoint="admin_job"),
        Rule(f"/_emulator/jobs/<task_id>/<any({actions}):action>", methods=["POST"], endpoint="admin_job_action"),
        Rule("/_emulator/inject", methods=["POST"], endpoint="admin_inject"),
        Rule("/_emulator/webhooks", methods=["GET"], endpoint="admin_webhooks"),
        Rule("/_emulator/forget-idempotency-keys", methods=["POST"], endpoint="admin_forget_keys"),
        Rule("/_emulator/keys", methods=["POST"], endpoint="admin_add_key"),
        Rule("/_emulator/keys/revoke", methods=["POST"], endpoint="admin_revoke_key"),
    ]


def _json_body(request: Request) -> dict[str, Any]:
    body = json.loads(request.get_data() or b"{}")
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def admin_response(emu: AdminControls, endpoint: str, args: Mapping[str, Any], request: Request) -> Response:
    """Answer one admin request; a control that cannot apply answers 400 with the reason."""
    try:
        return _admin(emu, endpoint, args, request)
    except (ValueError, KeyError, TypeError) as exc:
        return error(400, f"Invalid request: {exc}")


def _admin(emu: AdminControls, endpoint: str, args: Mapping[str, Any], request: Request) -> Response:
    if endpoint == "admin_health":
        return json_response({"status": "ok", "jobs": len(emu.jobs)})
    if endpoint in ("admin_submissions", "admin_webhooks"):
        if endpoint == "admin_submissions":
            return json_response([asdict(x) for x in list(emu.submissions)])
        return json_response([asdict(x) for x in list(emu.webhook_deliveries)])
    if endpoint == "admin_jobs":
        return json_response({tid: job.summary() for tid, job in list(emu.jobs.items())})
    if endpoint == "admin_forget_keys":
        return json_response({"forgotten": emu.forget_idempotency_keys()})
    if endpoint == "admin_inject":
        spec = _json_body(request)
        fault = emu.inject(spec.pop("method"), spec.pop("path_prefix"), spec.pop("status", None), **spec)
        return json_response(asdict(fault))
    if endpoint in ("admin_add_key", "admin_revoke_key"):
        spec = _json_body(request)
        if endpoint == "admin_add_key":
            emu.add_key(str(spec["key"]), same_org_as=spec.get("same_org_as"))
        else:
            emu.revoke_key(str(spec["key"]))
        return json_response({"status": "ok"})
    job = emu.jobs.get(args["task_id"])
    if job is None:
        return error(404)
    action = args.get("action")
    if action == "complete":
        emu.complete(job.task_id)
    elif action == "fail":
        message = _json_body(request).get("message")
        emu.fail(job.task_id, str(message)) if message else emu.fail(job.task_id)
    elif action == "cancel":
        emu.cancel_job(job.task_id)
    elif action == "expire-links":
        emu.expire_links(job.task_id)
    elif action == "forget":
        emu.forget_job(job.task_id)
    elif action == "corrupt":
        part = request.args.get("part", "0")
        if not part.isdigit():
            raise ValueError(f"part must be a part number, got {part!r}")
        emu.corrupt_result(job.task_id, request.get_data(), int(part))
    elif action == "split":
        spec = _json_body(request)
        emu.split_result(job.task_id, spec["parts"], spec.get("order"))
    elif action == "drop-columns":
        emu.drop_result_columns(job.task_id, list(_json_body(request)["columns"]))
    return json_response(job.summary())
