"""OpenLineage run events for one sync's run, built from what the run knew. Pure: nothing is read or sent here.

A sync's run is one OpenLineage run of the job ``{project}.{sync}``: a START event when it begins, and one of
COMPLETE, FAIL or ABORT when the invocation ends (:func:`end_type` says which). Each event names the source
relation as its input and the target table as its output (sixtyfour_sync/lineage/naming.py), with:

- on the output: the ``schema`` facet (the key and the columns the sync owns, with the warehouse's types and the
  struct fields' descriptions) and the ``columnLineage`` facet (each enriched column comes from the input columns
  the sync sends; the key is the source's key; the input hash is a masked digest of the inputs);
- on COMPLETE: the ``outputStatistics`` facet, ``rowCount`` being the rows the run wrote into the target;
- on FAIL: the ``errorMessage`` facet with the sync's errors;
- on every event: the ``sixtyfour_sync`` run facet, a custom facet with the tool's run id and, at the end, the
  sync's numbers exactly as the run's summary shows them (engine/summary.py, from engine/ledger/accounting.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import attr
from openlineage.client.constants import __version__ as CLIENT_VERSION
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    documentation_job,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

from sixtyfour_sync._redact import redact
from sixtyfour_sync._version import __version__
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.lineage.naming import DatasetId

__all__ = [
    "FACET_NAME",
    "PRODUCER",
    "Parent",
    "SixtyfourSyncRunFacet",
    "SyncFacts",
    "end_event",
    "end_type",
    "rows_written",
    "run_uuid",
    "start_event",
    "to_dict",
    "to_json",
]

_REPO = "https://github.com/sixtyfour-sync/sixtyfour-sync"
#: Who produced the events: this version of the tool.
PRODUCER = f"{_REPO}/tree/v{__version__}"
#: The custom run facet's key, and where its JSON Schema is published (the file ships in this package).
FACET_NAME = "sixtyfour_sync"
FACET_SCHEMA_URL = (
    "https://raw.githubusercontent.com/sixtyfour-sync/sixtyfour-sync/"
    f"v{__version__}/sixtyfour_sync/lineage/SixtyfourSyncRunFacet.json#/$defs/SixtyfourSyncRunFacet"
)
#: The longest error message a FAIL event carries.
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Parent:
    """The run that started this one (an orchestrator's task), as ``OPENLINEAGE_PARENT_ID`` names it."""

    namespace: str
    name: str
    run_id: str
    root: Parent | None = None


@dataclass
class SyncFacts:
    """What one sync's events say, gathered before it runs (sixtyfour_sync/lineage/emitter.py)."""

    job_namespace: str
    job_name: str
    sync: str
    run_id: str
    run_uuid: str
    command: str
    started_at: float
    endpoint: str
    tier: str
    target: DatasetId
    inputs: list[DatasetId] = field(default_factory=list)
    description: str | None = None
    #: The source's key columns and the target's (same order), and the input columns the sync sends: with one
    #: input relation and known inputs, the output gets its column lineage.
    source_key: list[str] = field(default_factory=list)
    target_key: list[str] = field(default_factory=list)
    input_columns: list[str] = field(default_factory=list)
    #: Target columns answered from the inputs (the struct fields and their confidences), and the input hash.
    enriched_columns: list[str] = field(default_factory=list)
    hash_columns: list[str] = field(default_factory=list)
    #: The output's schema: (column, warehouse type or None, description or None).
    schema: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    parent: Parent | None = None


@attr.define
class SixtyfourSyncRunFacet(RunFacet):
    """The run facet of sixtyfour-sync: the tool's run id and, on the end event only, the sync's numbers with the
    names and values of its entry in the run's JSON summary (``RunResult.to_dict()``)."""

    run_id: str
    command: str
    sync: str
    endpoint: str
    tier: str
    status: str | None = attr.field(default=None)
    rows_selected: int | None = attr.field(default=None)
    rows_sent: int | None = attr.field(default=None)
    rows_enriched: int | None = attr.field(default=None)
    rows_failed: int | None = attr.field(default=None)
    rows_merged: int | None = attr.field(default=None)
    rows_unsent: int | None = attr.field(default=None)
    rows_written: int | None = attr.field(default=None)
    estimated_cost_cents: float | None = attr.field(default=None)
    charged_cents: float | None = attr.field(default=None)
    charged_later_cents: float | None = attr.field(default=None)
    resumed_charged_cents: float | None = attr.field(default=None)
    replays: int | None = attr.field(default=None)
    tiers: dict[str, dict[str, Any]] | None = attr.field(default=None)
    jobs_in_flight: int | None = attr.field(default=None)
    jobs_needing_attention: int | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


def run_uuid(run_id: str, sync: str, started_at: float) -> str:
    """The OpenLineage run id of one sync in one run: a UUIDv7 whose time is when the sync started and whose
    other bits are a digest of the tool's run id and the sync's name (the same sync in the same run, the same id)."""
    ms = int(started_at * 1000) & ((1 << 48) - 1)
    digest = int.from_bytes(hashlib.sha256(f"{run_id}/{sync}".encode()).digest()[:10], "big")
    rand_a, rand_b = (digest >> 62) & 0xFFF, digest & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def end_type(status: str | None, *, fail_on_budget: bool = False) -> RunState:
    """How a sync's status ends its run: FAIL for a failure (no result at all: the run stopped under it), ABORT
    for a run stopped on request, COMPLETE otherwise. A partial sync (jobs still running, exit 3) and a budget
    reached are COMPLETE: this run ended; the facet's ``status`` and ``jobs_in_flight`` say what is left."""
    if status is None or status in ("failed", "no_credits") or (status == "budget_reached" and fail_on_budget):
        return RunState.FAIL
    if status == "interrupted":
        return RunState.ABORT
    return RunState.COMPLETE


def rows_written(result: SyncResult) -> int:
    """Rows the run wrote into the target: its own answers, those of earlier runs' jobs it finished, and held
    rows it merged at last."""
    return result.rows_merged + result.resumed.rows_merged + result.rows_released


def _run_facets(f: SyncFacts, result: SyncResult | None, status: str | None) -> dict[str, RunFacet]:
    facets: dict[str, RunFacet] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__, name="sixtyfour-sync", openlineageAdapterVersion=CLIENT_VERSION, producer=PRODUCER
        ),
        FACET_NAME: _own_facet(f, result, status),
    }
    if f.parent is not None:
        facets["parent"] = _parent_facet(f.parent)
    return facets


def _own_facet(f: SyncFacts, result: SyncResult | None, status: str | None) -> SixtyfourSyncRunFacet:
    facet = SixtyfourSyncRunFacet(
        run_id=f.run_id,
        command=f.command,
        sync=f.sync,
        endpoint=f.endpoint,
        tier=f.tier,
        status=status,
        producer=PRODUCER,
    )
    if result is None:
        return facet
    summary = result.to_dict()  # the run's numbers, from its one accounting
    facet.status = result.status
    for name in (
        "rows_selected",
        "rows_sent",
        "rows_enriched",
        "rows_failed",
        "rows_merged",
        "rows_unsent",
        "estimated_cost_cents",
        "charged_cents",
        "charged_later_cents",
        "replays",
        "tiers",
    ):
        setattr(facet, name, summary[name])
    facet.rows_written = rows_written(result)
    facet.resumed_charged_cents = result.resumed.charged_cents
    facet.jobs_in_flight = len(summary["jobs_in_flight"])
    facet.jobs_needing_attention = len(summary["jobs_needing_attention"])
    return facet


def _parent_facet(p: Parent) -> parent_run.ParentRunFacet:
    root = p.root or p
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=p.run_id),
        job=parent_run.Job(namespace=p.namespace, name=p.name),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=root.run_id), job=parent_run.RootJob(namespace=root.namespace, name=root.name)
        ),
        producer=PRODUCER,
    )


def _job(f: SyncFacts) -> Job:
    facets: dict[str, JobFacet] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="SIXTYFOUR_SYNC", jobType="SYNC", producer=PRODUCER
        )
    }
    if f.description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(description=f.description, producer=PRODUCER)
    return Job(namespace=f.job_namespace, name=f.job_name, facets=facets)


def _input_field(
    source: DatasetId, column: str, kind: str, subtype: str, description: str, *, masking: bool = False
) -> column_lineage_dataset.InputField:
    return column_lineage_dataset.InputField(
        namespace=source.namespace,
        name=source.name,
        field=column,
        transformations=[
            column_lineage_dataset.Transformation(type=kind, subtype=subtype, description=description, masking=masking)
        ],
    )


def _column_lineage(f: SyncFacts) -> column_lineage_dataset.ColumnLineageDatasetFacet | None:
    """Which input columns each output column comes from (one input relation with known inputs only)."""
    if len(f.inputs) != 1 or not f.input_columns:
        return None
    (src,) = f.inputs
    fields: dict[str, column_lineage_dataset.Fields] = {}
    for source_key, target_key in zip(f.source_key, f.target_key, strict=True):
        fields[target_key] = column_lineage_dataset.Fields(
            inputFields=[_input_field(src, source_key, "DIRECT", "IDENTITY", "the source row's key")]
        )
    why = f"researched by Sixtyfour's {f.endpoint} endpoint from the row's inputs"
    answered = [_input_field(src, c, "DIRECT", "TRANSFORMATION", why) for c in f.input_columns]
    for column in f.enriched_columns:
        fields[column] = column_lineage_dataset.Fields(inputFields=answered)
    digest = [
        _input_field(src, c, "DIRECT", "TRANSFORMATION", "a hash of the row's inputs", masking=True)
        for c in f.input_columns
    ]
    for column in f.hash_columns:
        fields[column] = column_lineage_dataset.Fields(inputFields=digest)
    tie = [_input_field(src, k, "INDIRECT", "JOIN", "answers are tied back to rows by the key") for k in f.source_key]
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, dataset=tie, producer=PRODUCER)


def _output(f: SyncFacts, result: SyncResult | None, state: RunState) -> OutputDataset:
    facets: dict[str, DatasetFacet] = {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t, description=d) for n, t, d in f.schema],
            producer=PRODUCER,
        )
    }
    lineage = _column_lineage(f)
    if lineage is not None:
        facets["columnLineage"] = lineage
    out = OutputDataset(namespace=f.target.namespace, name=f.target.name, facets=facets)
    if result is not None and state == RunState.COMPLETE:
        out.outputFacets = {
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows_written(result), producer=PRODUCER
            )
        }
    return out


def start_event(f: SyncFacts) -> RunEvent:
    """The START event of a sync's run."""
    return RunEvent(
        eventType=RunState.START,
        eventTime=_time(f.started_at),
        run=Run(runId=f.run_uuid, facets=_run_facets(f, None, "running")),
        job=_job(f),
        inputs=[InputDataset(namespace=d.namespace, name=d.name) for d in f.inputs],
        outputs=[_output(f, None, RunState.START)],
        producer=PRODUCER,
    )


def end_event(
    f: SyncFacts,
    result: SyncResult | None,
    *,
    ended_at: float,
    error: str | None = None,
    fail_on_budget: bool = False,
) -> RunEvent:
    """The event ending a sync's run: ``result`` is the sync's outcome with the run's numbers (None when the run
    stopped before the sync had one: a FAIL with ``error``)."""
    state = end_type(None if result is None else result.status, fail_on_budget=fail_on_budget)
    facets = _run_facets(f, result, None if result is not None else "failed")
    errors: Sequence[str] = list(result.errors) if result is not None else []
    if error and error not in errors:
        errors = [*errors, error]
    if state in (RunState.FAIL, RunState.ABORT) and errors:
        message = redact("; ".join(errors))[:MAX_ERROR_CHARS]
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="PYTHON", producer=PRODUCER
        )
    return RunEvent(
        eventType=state,
        eventTime=_time(result.completed_at if result is not None and result.completed_at else ended_at),
        run=Run(runId=f.run_uuid, facets=facets),
        job=_job(f),
        inputs=[InputDataset(namespace=d.namespace, name=d.name) for d in f.inputs],
        outputs=[_output(f, result, state)],
        producer=PRODUCER,
    )


def to_json(event: RunEvent) -> str:
    """The event as the client sends it."""
    return Serde.to_json(event)


def to_dict(event: RunEvent) -> Mapping[str, Any]:
    """The event as a JSON object."""
    return Serde.to_dict(event)
