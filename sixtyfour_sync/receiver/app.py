"""Wiring a receiver to a project: its ledgers for dedupe and lookup, the engine for finishing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sixtyfour_sync._redact import Secret, register_secret
from sixtyfour_sync.engine.api import open_ledgers, run
from sixtyfour_sync.engine.context import Reporter
from sixtyfour_sync.engine.scheduler import StopToken
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.receiver.finisher import Finisher
from sixtyfour_sync.receiver.server import Receiver, WebhookServer

__all__ = ["SECRET_ENV", "build_server", "webhook_secret"]

log = logging.getLogger("sixtyfour_sync.receiver")

SECRET_ENV = "SIXTYFOUR_WEBHOOK_SECRET"  # noqa: S105 (the variable's name, not a secret)


def webhook_secret(env: Mapping[str, str]) -> Secret:
    """The signing secret from the environment; a located error when it is missing."""
    raw = (env.get(SECRET_ENV) or "").strip()
    if not raw:
        raise ConfigError(
            f"no webhook signing secret: set {SECRET_ENV}",
            hint="the organisation's signing secret (sk_whsec_...); deliveries are verified with it, and "
            "unsigned ones are refused",
        )
    register_secret(raw)
    return Secret(raw)


def build_server(
    host: str,
    port: int,
    *,
    secret: Secret,
    project: Mapping[str, Any],
    api_key: str | None = None,
    api_url: str | None = None,
    finish_wait_seconds: float = 120.0,
    give_up_after: float = 3600.0,
    unknown_grace: float = 60.0,
    stop: StopToken | None = None,
    reporter: Reporter | None = None,
) -> WebhookServer:
    """A listener on ``host:port`` (0: any free port) whose finisher is started; ``project`` holds the
    keyword arguments naming the project (project_dir, profiles_dir, profile, target, vars...)."""
    token = stop or StopToken()
    kwargs = dict(project)

    def ledgers() -> Any:
        return open_ledgers(**kwargs)

    def lookup(task_id: str) -> str | None:
        with ledgers() as found:
            for ledger in found:
                job = ledger.job_by_task(task_id)
                if job is not None:
                    return str(job.sync_name)
        return None

    def finish(sync: str, tasks: list[str]) -> dict[str, str | None]:
        result = run(
            **kwargs,
            select=[sync],
            only_tasks=tasks,
            command="webhook",
            max_wait_seconds=finish_wait_seconds,
            stop=token,
            reporter=reporter,
            api_key=api_key,
            api_url=api_url,
        )
        one = next((s for s in result.syncs if s.name == sync), None)
        if one is not None and one.status == "locked":
            log.info("webhook: another run holds %s; it finishes %d task(s) itself", sync, len(tasks))
            return {t: "locked" for t in tasks}
        if result.error:
            log.warning("webhook: finishing %s: %s", sync, result.error)
        states: dict[str, str | None] = {}
        with ledgers() as found:
            for t in tasks:
                job = next((j for j in (ledger.job_by_task(t) for ledger in found) if j is not None), None)
                states[t] = None if job is None else job.state.value
        log.info("webhook: %s: %s", sync, ", ".join(f"task {t} {s}" for t, s in states.items()))
        return states

    finisher = Finisher(finish, lookup, give_up_after=give_up_after, unknown_grace=unknown_grace)
    server = WebhookServer((host, port), Receiver(secret, ledgers, finisher))
    finisher.start()
    return server
