"""``webhooks serve``: finishing jobs as Sixtyfour's deliveries arrive."""

from __future__ import annotations

import os
import sys

import click

from sixtyfour_sync.cli.flags import (
    _say,
)
from sixtyfour_sync.cli_options import GlobalOptions, global_options
from sixtyfour_sync.errors import ConfigError


@click.group()
def webhooks() -> None:
    """Webhook-driven completion: receive Sixtyfour's deliveries and finish the jobs they announce."""


@webhooks.command("serve")
@global_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free).")
@click.option(
    "--finish-wait",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="Longest a finish polls a job the API has not ended yet (holding no lease) before trying again later.",
)
@click.option(
    "--give-up-after",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds after a delivery when a task still unfinished is left to the next `run`.",
)
@click.pass_obj
def webhooks_serve(opts: GlobalOptions, host: str, port: int, finish_wait: float, give_up_after: float) -> None:
    """Listen for deliveries (plain HTTP: put it behind the public HTTPS address given as webhook_url).

    Each delivery is checked against SIXTYFOUR_WEBHOOK_SECRET (401 when it does not match or is over 300 s
    old), recorded once by its event id (the signed body's event_id), and answered at once; its job is then
    finished in the background: the API is asked until it ends the job, without the sync's lease, then the
    lease is taken for fresh links, download and merge. Ctrl-C or SIGTERM stops after the finish under way.
    """
    import time

    from sixtyfour_sync.engine.jobs.scheduler import StopToken
    from sixtyfour_sync.engine.jobs.signals import handle_signals
    from sixtyfour_sync.receiver.app import build_server, webhook_secret
    from sixtyfour_sync.ui import LogReporter

    secret = webhook_secret(os.environ)
    if not os.environ.get("SIXTYFOUR_API_KEY"):
        raise ConfigError(
            "no API key: set SIXTYFOUR_API_KEY", hint="finishing a job asks the API for its status and its result"
        )
    token = StopToken()
    server = build_server(
        host,
        port,
        secret=secret,
        project=opts.common(),
        api_url=os.environ.get("SIXTYFOUR_API_URL") or None,
        finish_wait_seconds=finish_wait,
        give_up_after=give_up_after,
        stop=token,
        reporter=LogReporter(),
    )
    with handle_signals(token), server.running():
        _say(opts, "webhooks.listening", f"listening on {server.url} (POST deliveries; GET /healthz)", url=server.url)
        sys.stdout.flush()
        while not token.requested:
            time.sleep(0.2)
    _say(opts, "webhooks.stopped", f"stopped ({token.reason})", reason=token.reason)
