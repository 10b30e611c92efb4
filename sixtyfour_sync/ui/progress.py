"""Progress while a run works: rich bars on a terminal, else one log line (or JSON object) per event."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sixtyfour_sync.engine.runner import Reporter
from sixtyfour_sync.logging import event

log = logging.getLogger("sixtyfour_sync.progress")


class LogReporter(Reporter):
    """Plain progress lines (text or JSON logs), one per event."""

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "scan":
            event("sync.scan", f"{sync}: reading {data['source_rows']:,} source row(s)", sync=sync, **data)
        elif event_name == "plan":
            event("sync.plan", f"{sync}: {data['rows']:,} row(s) to send in {data['files']} file(s)", sync=sync, **data)
        elif event_name == "extracted":
            event("sync.file_written", f"{sync}: wrote a file of {data['rows']:,} rows", sync=sync, **data)
        elif event_name == "submitted":
            what = "replayed" if data.get("replay") else "submitted"
            event(
                "sync.submitted", f"{sync}: {what} {data['rows']:,} rows as task {data['task_id']}", sync=sync, **data
            )
        elif event_name == "merged":
            event("sync.merged", f"{sync}: merged {data['rows']:,} rows", sync=sync, **data)
        elif event_name == "job_done":
            event("sync.job_done", f"{sync}: a job ended {data['state']}", sync=sync, **data)
        elif event_name == "note":
            level = {"warning": logging.WARNING, "error": logging.ERROR}.get(str(data.get("level")), logging.INFO)
            event("sync.note", f"{sync}: {data['message']}", level=level, sync=sync)


class RichReporter(Reporter):
    """Progress bars on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[sync]}[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.lock = threading.Lock()
        self.started = False

    def _task(self, sync: str, name: str, total: float | None) -> TaskID:
        key = (sync, name)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(name, total=total, sync=sync)
        return self.tasks[key]

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        with self.lock:
            if not self.started:
                self.progress.start()
                self.started = True
            if event_name == "scan":
                self._task(sync, "source rows read", data["source_rows"])
                for name in ("rows extracted", "files submitted", "jobs finished", "rows merged"):
                    self._task(sync, name, None)
            elif event_name == "scanned":
                self.progress.advance(self._task(sync, "source rows read", None), data["rows"])
            elif event_name == "plan":
                # the pass is over: the totals are known now
                rows, files = data["rows"], data["files"]
                for name, total in (
                    ("rows extracted", rows),
                    ("files submitted", files),
                    ("jobs finished", files),
                    ("rows merged", rows),
                ):
                    self.progress.update(self._task(sync, name, total), total=total)
            elif event_name == "extracted":
                self.progress.advance(self._task(sync, "rows extracted", None), data["rows"])
            elif event_name == "submitted":
                self.progress.advance(self._task(sync, "files submitted", None), 1)
            elif event_name == "job_done":
                self.progress.advance(self._task(sync, "jobs finished", None), 1)
            elif event_name == "merged":
                self.progress.advance(self._task(sync, "rows merged", None), data["rows"])
            elif event_name == "note":
                style = {"warning": "yellow", "error": "red"}.get(str(data.get("level")), "dim")
                self.progress.console.print(f"[{style}]{sync}: {data['message']}[/]", highlight=False)

    def close(self) -> None:
        """Stop drawing."""
        if self.started:
            self.progress.stop()


def make_reporter(log_format: str, stream: TextIO | None = None) -> Reporter:
    """Bars on an interactive terminal with text logs; plain events otherwise."""
    out = stream or sys.stderr
    if log_format == "text" and out.isatty():
        return RichReporter()
    return LogReporter()
