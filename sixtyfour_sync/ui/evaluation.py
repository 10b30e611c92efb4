"""What ``evaluate`` prints: scores per field, per tier and per confidence band, and the suggested thresholds."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.console import Console

from sixtyfour_sync.commands.evaluating import EvaluationResult
from sixtyfour_sync.evaluate.score import Counts
from sixtyfour_sync.ui.common import Col, _console, _grid

_COLS = [Col("correct"), Col("wrong"), Col("missing"), Col("accuracy"), Col("precision"), Col("coverage")]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cells(c: Counts) -> list[str]:
    return [str(c.correct), str(c.wrong), str(c.missing), _pct(c.accuracy), _pct(c.precision), _pct(c.coverage)]


def _table(console: Console, title: str, first: list[Col], groups: Mapping[tuple[str, ...], Counts]) -> None:
    rows = [[*key, *_cells(c)] for key, c in groups.items()]
    _grid(console, title, first + _COLS, rows)


def print_evaluation(result: EvaluationResult, log_format: str, console: Console | None = None) -> None:
    """The ``evaluate`` report, as tables or one JSON object."""
    if log_format == "json":
        print(json.dumps({"event": "evaluate.scores", **result.to_dict()}, default=str))
        return
    console = console or _console(log_format)
    head = f"{result.sync}: {result.rows_scored} labelled row(s) of {result.target} scored against {result.labels}"
    console.print(head)
    if result.unmatched_count:
        console.print(
            f"{result.unmatched_count} labelled key(s) are not in the target, not scored: "
            + "; ".join(result.unmatched)
            + (" ..." if result.unmatched_count > len(result.unmatched) else "")
        )
    field = Col("field", number=False)
    _table(console, "by field", [field], {(k,): v for k, v in result.by_field().items()})
    _table(console, "by field and tier", [field, Col("tier", number=False)], result.by("tier"))
    _table(console, "by field and confidence band", [field, Col("band", number=False)], result.by("band"))
    if result.target_precision is not None:
        rows = []
        for name, s in result.suggestions.items():
            gate = result.would_gate.get(name)
            rows.append(
                [
                    name,
                    "none reaches it" if s.min_confidence is None else str(s.min_confidence),
                    _pct(s.precision),
                    f"{s.kept}",
                    f"{s.held_back}",
                    "-" if gate is None else f"{gate:,} of {result.stored.get(name, 0):,}",
                ]
            )
        cols = [
            field,
            Col("min_confidence"),
            Col("precision at it"),
            Col("labelled kept"),
            Col("labelled held back"),
            Col("stored values it would gate"),
        ]
        _grid(console, f"min_confidence for precision {result.target_precision:.0%}", cols, rows)
    if result.recorded:
        console.print(f"recorded as {result.evaluation_id} in the ledger: `sixtyfour-sync report` shows it")
