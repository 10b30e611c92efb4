"""``evaluate``: how right a sync's stored answers are, against what a team knows (docs/evaluate.md).

Two steps. :func:`sample` writes a stratified sample of the target's enriched rows (by tier and confidence
band) with empty label columns for a person to fill. :func:`evaluate` reads labels (that file filled in, any
CSV of the key and struct fields, or a warehouse table), scores every labelled field RECON's way (correct,
wrong, missing; accuracy, precision, coverage per field, tier and confidence band), suggests a
``min_confidence`` per field for a target precision with how many stored values it would gate, and records
the scores in the ledger (``_sixtyfour_sync_evaluations``) for ``report``. A labels file with any problem is
refused whole, every problem located, before anything is read from the target or written.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sixtyfour_sync.commands._shared import _project
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.ledger.evaluations import record_evaluation
from sixtyfour_sync.engine.ledger.store import Ledger, utcnow
from sixtyfour_sync.engine.plan.columns import target_ref
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.evaluate.labels import SAMPLE_BAND, SAMPLE_TIER, Labels, key_text, labels_from_rows, read_labels_csv
from sixtyfour_sync.evaluate.normalise import Tolerances, is_empty
from sixtyfour_sync.evaluate.sample import Sampler
from sixtyfour_sync.evaluate.score import Counts, Scored, score_rows, tally
from sixtyfour_sync.evaluate.threshold import Suggestion, suggest_threshold
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

__all__ = ["EvaluationResult", "SampleResult", "evaluate", "sample"]

_ENRICHED = "enriched"


@dataclass
class SampleResult:
    """What ``evaluate --sample`` wrote."""

    sync: str
    path: Path
    rows: int
    #: Enriched rows considered, and the rows sampled per (tier, band).
    enriched: int
    strata: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """For ``--log-format json``."""
        return {"sync": self.sync, "path": str(self.path), "rows": self.rows, "enriched": self.enriched,
                "strata": self.strata}  # fmt: skip


@dataclass
class EvaluationResult:
    """The scores of one evaluation."""

    evaluation_id: str
    sync: str
    target: str
    labels: str
    evaluated_at: datetime
    rows_labelled: int
    rows_scored: int
    #: Labelled keys the target does not hold (not scored), the first few.
    unmatched: list[str]
    unmatched_count: int
    fields: list[str]
    scored: list[Scored] = field(repr=False)
    target_precision: float | None = None
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    #: Stored values each suggested threshold would hold back (a value with a confidence below it).
    would_gate: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    recorded: bool = False

    def by_field(self) -> dict[str, Counts]:
        """Counts per field."""
        return {k[0]: v for k, v in tally(self.scored, by=("field",)).items()}

    def by(self, *names: str) -> dict[tuple[str, ...], Counts]:
        """Counts per field and the named groupings (``tier``, ``band``)."""
        return tally(self.scored, by=("field", *names))

    def ledger_rows(self) -> list[dict[str, Any]]:
        """One row per field, tier and band, as ``_sixtyfour_sync_evaluations`` holds them."""
        rows = []
        for (name, tier, band), counts in self.by("tier", "band").items():
            s = self.suggestions.get(name)
            rows.append(
                {
                    "evaluation_id": self.evaluation_id,
                    "sync_name": self.sync,
                    "target": self.target,
                    "labels": self.labels,
                    "field": name,
                    "tier": tier,
                    "band": band,
                    "correct": counts.correct,
                    "wrong": counts.wrong,
                    "missing": counts.missing,
                    "target_precision": self.target_precision,
                    "suggested_min_confidence": None if s is None else s.min_confidence,
                    "would_gate": self.would_gate.get(name),
                    "evaluated_at": self.evaluated_at,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``--json``."""

        def nested(groups: Mapping[tuple[str, ...], Counts]) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for (name, part), counts in groups.items():
                out.setdefault(name, {})[part] = counts.as_dict()
            return out

        return {
            "evaluation_id": self.evaluation_id,
            "sync": self.sync,
            "target": self.target,
            "labels": self.labels,
            "evaluated_at": self.evaluated_at.isoformat(),
            "rows_labelled": self.rows_labelled,
            "rows_scored": self.rows_scored,
            "unmatched_keys": self.unmatched_count,
            "unmatched_examples": self.unmatched,
            "fields": {k: v.as_dict() for k, v in self.by_field().items()},
            "by_tier": nested(self.by("tier")),
            "by_band": nested(self.by("band")),
            "target_precision": self.target_precision,
            "suggestions": {
                name: {
                    "min_confidence": s.min_confidence,
                    "precision": s.precision,
                    "labelled_kept": s.kept,
                    "labelled_held_back": s.held_back,
                    "would_gate": self.would_gate.get(name),
                    "stored_values": self.stored.get(name),
                }
                for name, s in self.suggestions.items()
            },
            "recorded": self.recorded,
        }


def _pick(project: Project, sync: str) -> LoadedSync:
    for loaded in project.syncs:
        if loaded.spec.name == sync:
            return loaded
    names = ", ".join(sorted(s.spec.name for s in project.syncs)) or "none"
    raise ConfigError(f"no sync named {sync!r}", hint=f"the project's syncs: {names}")


def _kinds(spec: SyncSpec) -> dict[str, str]:
    return {name: f.type for name, f in spec.struct.items()}


def _target_rows(adapter: Adapter, spec: SyncSpec, *, enriched_only: bool) -> Iterator[dict[str, Any]]:
    """The target's rows: ``key`` (a tuple), each field and ``<field>_confidence``, ``tier`` (the answer's, else the
    sync's) and ``status``."""
    ref = target_ref(spec)
    if not adapter.table_exists(ref):
        raise ConfigError(
            f"the target {adapter.table_sql(ref)} of {spec.name} does not exist",
            hint=f"`sixtyfour-sync run --select {spec.name}` creates and fills it",
        )
    key = list(spec.source.key)
    fields = list(spec.struct)
    names: list[tuple[str, str]] = [("key", k) for k in key]
    names += [(f, spec.column_for(f)) for f in fields]
    if spec.field_confidence:
        names += [(f"{f}_confidence", spec.column_for(f"{f}_confidence")) for f in fields]
    names += [("tier", spec.bookkeeping("tier")), ("status", spec.bookkeeping("status"))]
    cols = ", ".join(adapter.quote(column, what="target column") for _, column in names)
    sql = f"SELECT {cols} FROM {adapter.table_sql(ref)}"
    params: list[Any] = []
    if enriched_only:
        sql += f" WHERE {adapter.quote(spec.bookkeeping('status'), what='target column')} = ?"
        params.append(_ENRICHED)
    nkey = len(key)
    for batch in adapter.stream(sql, params):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for values in zip(*columns, strict=True):
            row: dict[str, Any] = {"key": tuple(values[:nkey])}
            for (name, _), value in zip(names[nkey:], values[nkey:], strict=True):
                row[name] = value
            row["tier"] = row["tier"] or spec.tier  # a row answered before the tier was recorded
            yield row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write_atomically(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sample(
    project_dir: Path | str = ".",
    *,
    sync: str,
    n: int,
    out: Path,
    seed: int = 0,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> SampleResult:
    """Write up to ``n`` enriched rows of ``sync``'s target to ``out`` (CSV), stratified by tier and band.

    Columns: the key, ``_sixtyfour_tier``, ``_sixtyfour_band``, then per field its stored answer
    (``<field>_answer``), its confidence and an empty ``<field>`` column to fill with the right value.
    """
    if n < 1:
        raise ConfigError("--sample needs at least 1 row")
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    with project:
        loaded = _pick(project, sync)
        spec = loaded.spec
        adapter = project.adapter_for(loaded)
        fields = list(spec.struct)
        sampler = Sampler(n, seed)
        enriched = 0
        for row in _target_rows(adapter, spec, enriched_only=True):
            enriched += 1
            sampler.add(row["key"], row["tier"], [row.get(f"{f}_confidence") for f in fields], row)
    picked = sampler.pick()
    header = [*spec.source.key, SAMPLE_TIER, SAMPLE_BAND]
    for f in fields:
        header.append(f"{f}_answer")
        if spec.field_confidence:
            header.append(f"{f}_confidence")
        header.append(f)
    lines: list[list[str]] = []
    strata: Counter[str] = Counter()
    for (tier, band), row in picked:
        strata[f"{tier} {band}"] += 1
        cells = [_cell(k) for k in row["key"]] + [tier, band]
        for f in fields:
            cells.append(_cell(row.get(f)))
            if spec.field_confidence:
                cells.append(_cell(row.get(f"{f}_confidence")))
            cells.append("")
        lines.append(cells)
    _write_atomically(out, header, lines)
    return SampleResult(spec.name, out, len(lines), enriched, dict(sorted(strata.items())))


def _labels_from_table(adapter: Adapter, name: str, spec: SyncSpec, kinds: Mapping[str, str]) -> Labels:
    schema, _, table = name.rpartition(".")
    ref = TableRef(table, schema or None)
    if not adapter.table_exists(ref):
        raise ConfigError(f"the labels table {adapter.table_sql(ref)} does not exist")
    columns = list(adapter.get_columns(ref))
    shown = [adapter.denormalize_identifier(c) for c in columns]
    sql = f"SELECT {', '.join(adapter.quote(c, what='labels column') for c in shown)} FROM {adapter.table_sql(ref)}"
    rows: list[tuple[int, list[Any]]] = []
    for batch in adapter.stream(sql):
        cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        rows.extend((len(rows) + 1 + i, list(values)) for i, values in enumerate(zip(*cols, strict=True)))
    return labels_from_rows(name, shown, rows, spec.source.key, kinds, sync=spec.name, header_line=None)


def evaluate(
    project_dir: Path | str = ".",
    *,
    sync: str,
    labels: Path | None = None,
    labels_table: str | None = None,
    target_precision: float | None = None,
    tolerances: Tolerances | None = None,
    record: bool = True,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Score ``sync``'s stored answers against labels (a CSV file or a warehouse table; one of them)."""
    if (labels is None) == (labels_table is None):
        raise ConfigError("give the labels as --labels FILE or --labels-table SCHEMA.TABLE (one of them)")
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ConfigError(f"--target-precision must be above 0 and at most 1, got {target_precision}")
    tolerances = tolerances or Tolerances()
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    with project:
        loaded = _pick(project, sync)
        spec = loaded.spec
        kinds = _kinds(spec)
        unknown = sorted(set(tolerances.by_field) - set(kinds))
        if unknown:
            raise ConfigError(f"--tolerance names {', '.join(unknown)}: not a struct field of {spec.name}")
        adapter = project.adapter_for(loaded)
        if labels is not None:
            read = read_labels_csv(labels, spec.source.key, kinds, sync=spec.name)
        else:
            assert labels_table is not None
            read = _labels_from_table(adapter, labels_table, spec, kinds)
        wanted = {name: kinds[name] for name in read.fields}
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        found: set[tuple[str, ...]] = set()
        histograms: dict[str, Counter[int]] = {name: Counter() for name in wanted}
        stored: Counter[str] = Counter()
        for row in _target_rows(adapter, spec, enriched_only=False):
            for name in wanted:
                if not is_empty(row.get(name)):
                    stored[name] += 1
                    conf = row.get(f"{name}_confidence")
                    if conf is not None:
                        histograms[name][int(conf)] += 1
            kt = key_text(row["key"])
            label = read.rows.get(kt)
            if label is not None and kt not in found:
                found.add(kt)
                pairs.append((row, label))
        scored = score_rows(pairs, wanted, tolerances)
        missing_keys = [", ".join(k) for k in read.rows if k not in found]
        result = EvaluationResult(
            evaluation_id=f"eval-{uuid.uuid4().hex[:16]}",
            sync=spec.name,
            target=adapter.table_sql(target_ref(spec)),
            labels=read.source,
            evaluated_at=utcnow(),
            rows_labelled=len(read.rows),
            rows_scored=len(pairs),
            unmatched=missing_keys[:10],
            unmatched_count=len(missing_keys),
            fields=list(wanted),
            scored=scored,
            target_precision=target_precision,
            stored=dict(stored),
        )
        if target_precision is not None:
            for name in sorted(wanted):  # in the order of the score tables
                suggestion = suggest_threshold(scored, name, target_precision)
                result.suggestions[name] = suggestion
                t = suggestion.min_confidence
                if t is not None and spec.field_confidence:
                    result.would_gate[name] = sum(n for conf, n in histograms[name].items() if conf < t)
        if record and scored:
            record_evaluation(Ledger(adapter), result.ledger_rows())
            result.recorded = True
    return result
