"""Wiring a receiver to a project: its ledgers for dedupe and lookup, the engine for finishing.

Finishing a task is two steps. While the API has not ended the job, the receiver only asks ``/job-status``
(:func:`wait_for_api`): it holds no lease and opens no warehouse, so a scheduled ``run`` of the same sync is
free to start and finish the job itself. Once the API has ended it, the engine takes the sync's lease, reads
the job's state in the ledger again (a run may have merged it meanwhile), downloads and merges, and gives the
lease back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sixtyfour_sync._redact import Secret, register_secret
from sixtyfour_sync.api import ApiError, JobPoller, RetryableApiError, SixtyfourClient
from sixtyfour_sync.commands import API_KEY_ENV, open_ledgers, run
from sixtyfour_sync.engine.context import Reporter
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.receiver.finisher import Finisher
from sixtyfour_sync.receiver.server import Receiver, WebhookServer

__all__ = ["SECRET_ENV", "build_server", "wait_for_api", "webhook_secret"]

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


def wait_for_api(
    api: SixtyfourClient,
    tasks: Sequence[str],
    *,
    wait_seconds: float,
    stop: StopToken,
    poller: JobPoller | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[str], list[str]]:
    """Ask ``/job-status`` about each task until one has ended, ``wait_seconds`` pass or a stop is asked for;
    answer (ended, still running). No lease is held and no warehouse is touched meanwhile.

    A task the API cannot be asked about for good (404, a refused key) counts as ended: the engine, under the
    lease, decides what that means (lost, ...). A passing failure (5xx, a timeout) leaves it running.
    """
    poller = poller or JobPoller()
    deadline = clock() + wait_seconds
    left = list(dict.fromkeys(tasks))
    ended: list[str] = []
    while True:
        for task in list(left):
            try:
                ends = api.job_status(task).is_terminal
            except RetryableApiError as exc:
                log.info("webhook: asking the API about task %s failed (%s); asking again", task, exc)
                continue
            except ApiError:
                ends = True
            if ends:
                ended.append(task)
                left.remove(task)
        if ended or not left:
            return ended, left
        delay = poller.next_delay("running") or 0.0
        if clock() + delay > deadline or stop.wait(delay):
            return ended, left


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
                # a job of another target sharing this ledger (dev's, for a receiver of prod) is not ours
                if job is not None and ledger.mine(job):
                    return str(job.sync_name)
        return None

    def finish(sync: str, tasks: list[str]) -> dict[str, str | None]:
        key = api_key or os.environ.get(API_KEY_ENV) or ""
        with SixtyfourClient(key, base_url=api_url) as api:
            # Waiting for the API holds no lease: a scheduled run of this sync may start (and finish the job).
            ended, running = wait_for_api(api, tasks, wait_seconds=finish_wait_seconds, stop=token)
            states: dict[str, str | None] = {t: JobState.SUBMITTED.value for t in running}
            if running:
                log.info("webhook: %s: the API has not ended task(s) %s yet; asking later", sync, ", ".join(running))
            if not ended or token.requested:
                return states
            # Ended: take the lease, read the ledger again (a run may have merged it), download, merge, release.
            result = run(
                **kwargs,
                select=[sync],
                only_tasks=ended,
                command="webhook",
                max_wait_seconds=finish_wait_seconds,
                stop=token,
                reporter=reporter,
                client=api,
            )
        one = next((s for s in result.syncs if s.name == sync), None)
        if one is not None and one.status == "locked":
            log.info("webhook: another run holds %s; it finishes %d task(s) itself", sync, len(ended))
            return {**states, **{t: "locked" for t in ended}}
        if result.error:
            log.warning("webhook: finishing %s: %s", sync, result.error)
        with ledgers() as found:
            for t in ended:
                job = next((j for j in (ledger.job_by_task(t) for ledger in found) if j is not None), None)
                states[t] = None if job is None else job.state.value
        log.info("webhook: %s: %s", sync, ", ".join(f"task {t} {s}" for t, s in states.items()))
        return states

    finisher = Finisher(
        finish,
        lookup,
        give_up_after=give_up_after,
        unknown_grace=unknown_grace,
        on_stop=lambda: token.request("the receiver is stopping"),
    )
    server = WebhookServer((host, port), Receiver(secret, ledgers, finisher))
    finisher.start()
    return server
