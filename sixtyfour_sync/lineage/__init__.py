"""Lineage events for sync runs (OpenLineage), off unless configured; docs/lineage.md describes them.

``run`` asks :func:`lineage_listener` for a listener once per invocation, tells it when each sync starts and
hands it the run's result at the end. Without an OpenLineage configuration the listener does nothing and nothing
is imported: the OpenLineage client (the ``openlineage`` extra) is loaded only when the process environment
configures it the way the client itself reads it (:func:`configured_by`). Sending events never fails a run: a
transport error is a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sixtyfour_sync.config.models import LoadedSync
    from sixtyfour_sync.engine.project import Project
    from sixtyfour_sync.engine.summary import RunResult

__all__ = [
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "SWITCH_ENV",
    "Listener",
    "NoLineage",
    "configured_by",
    "lineage_listener",
]

log = logging.getLogger("sixtyfour_sync.lineage")

#: ``off`` (or 0, false, no) turns events off whatever else is configured; ``on`` (1, true, yes) turns them on
#: with the client's own configuration, or its default (events printed by its console transport).
SWITCH_ENV = "SIXTYFOUR_SYNC_OPENLINEAGE"
#: The jobs' namespace, the variable OpenLineage's integrations read; default :data:`DEFAULT_NAMESPACE`.
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
DEFAULT_NAMESPACE = "sixtyfour-sync"
_OFF = {"0", "false", "off", "no"}
_ON = {"1", "true", "on", "yes"}
#: What was warned about already in this process (a receiver calls ``run`` once per delivery).
_warned: set[str] = set()


class Listener(Protocol):
    """What ``run`` tells the lineage side: each sync as it starts, and the run's result at the end."""

    def sync_started(self, project: Project, loaded: LoadedSync, run_id: str, started_at: float) -> None:
        """A sync is about to run."""

    def run_ended(self, result: RunResult) -> None:
        """The run ended (its numbers are taken from the ledger): every started sync's run ends now."""


class NoLineage:
    """The listener when lineage is off: does nothing."""

    def sync_started(self, project: Project, loaded: LoadedSync, run_id: str, started_at: float) -> None:
        """Nothing to do."""

    def run_ended(self, result: RunResult) -> None:
        """Nothing to do."""


def _place(where: Callable[[], Path]) -> Path | None:
    """The working or home directory, or None when there is none (deleted, no HOME)."""
    try:
        return where()
    except (OSError, RuntimeError):
        return None


def configured_by(environ: Mapping[str, str], cwd: Path | None, home: Path | None) -> str | None:
    """What turns OpenLineage events on (a variable or a file, as the OpenLineage client finds its configuration),
    or None when nothing does or :data:`SWITCH_ENV` / ``OPENLINEAGE_DISABLED`` turns them off."""
    switch = environ.get(SWITCH_ENV, "").strip().lower()
    if switch in _OFF or environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    if switch in _ON:
        return SWITCH_ENV
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG"):
        if environ.get(name):
            return name
    dynamic = sorted(k for k in environ if k.startswith("OPENLINEAGE__TRANSPORT"))
    if dynamic:
        return dynamic[0]
    candidates = ([cwd / "openlineage.yml"] if cwd else []) + (
        [home / ".openlineage" / "openlineage.yml"] if home else []
    )
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args, extra={"event": "lineage.warning"})


def lineage_listener(command: str = "run", environ: Mapping[str, str] | None = None) -> Listener:
    """The listener for one invocation: :class:`NoLineage` unless OpenLineage is configured and its client is
    installed (configured without it: a warning, once, and no events)."""
    env = os.environ if environ is None else environ
    reason = configured_by(env, _place(Path.cwd), _place(Path.home))
    if reason is None:
        return NoLineage()
    try:
        from sixtyfour_sync.lineage.emitter import OpenLineageListener
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("openlineage"):
            raise
        warn_once(
            "missing",
            "%s asks for OpenLineage events, but the OpenLineage client is not installed: no lineage events are "
            "sent (pip install 'sixtyfour-sync[openlineage]')",
            reason,
        )
        return NoLineage()
    return OpenLineageListener.create(command, env, reason)
