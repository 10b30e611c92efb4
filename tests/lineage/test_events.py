"""The OpenLineage events of a sync's run (sixtyfour_sync/lineage/events.py), pure: their shape against what
the OpenLineage spec (2-0-2) requires, how each outcome ends a run, and the numbers they carry."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openlineage.client")

from sixtyfour_sync._redact import register_secret
from sixtyfour_sync.engine.summary import JobOutcome, ResumedWork, SyncResult
from sixtyfour_sync.lineage.events import (
    FACET_NAME,
    Parent,
    SyncFacts,
    end_event,
    end_type,
    run_uuid,
    start_event,
    to_dict,
)
from sixtyfour_sync.lineage.naming import DatasetId

SOURCE = DatasetId("duckdb://wh.duckdb", "wh.main.leads")
TARGET = DatasetId("duckdb://wh.duckdb", "wh.main.leads_enriched")
RUN_ID = "20261201T091334Z-cdffbf91"
STARTED = 1_790_000_000.25
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:\S+$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def facts(**over: Any) -> SyncFacts:
    base: dict[str, Any] = {
        "job_namespace": "sixtyfour-sync",
        "job_name": "crm.enrich_leads",
        "sync": "enrich_leads",
        "run_id": RUN_ID,
        "run_uuid": run_uuid(RUN_ID, "enrich_leads", STARTED),
        "command": "run",
        "started_at": STARTED,
        "endpoint": "people",
        "tier": "low",
        "target": TARGET,
        "inputs": [SOURCE],
        "description": "Work emails for new leads",
        "source_key": ["lead_id"],
        "target_key": ["lead_id"],
        "input_columns": ["first_name", "company"],
        "enriched_columns": ["email", "email_confidence"],
        "hash_columns": ["_sixtyfour_input_hash"],
        "schema": [("lead_id", None, "the source row's key"), ("email", "VARCHAR", "The work email")],
    }
    return SyncFacts(**{**base, **over})


def check_facet(where: str, facet: dict[str, Any]) -> None:
    assert _URI.match(facet.get("_producer", "")), f"{where}: _producer must be a URI"
    assert _URI.match(facet.get("_schemaURL", "")), f"{where}: _schemaURL must be a URI"


def check_spec_shape(event: dict[str, Any]) -> None:
    """What OpenLineage.json (2-0-2) requires of a RunEvent and of every facet in it."""
    assert _TIME.match(event["eventTime"]), event["eventTime"]
    assert _URI.match(event["producer"]) and _URI.match(event["schemaURL"])
    assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
    uuid.UUID(event["run"]["runId"])
    assert event["job"]["namespace"] and event["job"]["name"]
    for name, facet in {**event["run"].get("facets", {}), **event["job"].get("facets", {})}.items():
        check_facet(name, facet)
    for ds in event.get("inputs", []) + event.get("outputs", []):
        assert ds["namespace"] and ds["name"]
        for name, facet in {**ds.get("facets", {}), **ds.get("outputFacets", {}), **ds.get("inputFacets", {})}.items():
            check_facet(f"{ds['name']}.{name}", facet)
    for ds in event.get("outputs", []):
        lineage = ds.get("facets", {}).get("columnLineage")
        if lineage:
            for column, f in lineage["fields"].items():
                assert f["inputFields"], column
                for i in f["inputFields"] + lineage.get("dataset", []):
                    assert {"namespace", "name", "field"} <= set(i)
                    assert all(t["type"] in ("DIRECT", "INDIRECT") for t in i["transformations"])
        for field in ds.get("facets", {}).get("schema", {}).get("fields", []):
            assert field["name"]


def result(**over: Any) -> SyncResult:
    r = SyncResult("enrich_leads", status="ok", rows_by_reason={"new": 9}, rows_sent=9, rows_enriched=8, rows_failed=1)
    r.rows_merged, r.estimated_cost_cents, r.charged_cents, r.replays = 9, 18.0, 16.0, 1
    r.tiers = {"low": {"rows_sent": 9, "estimated_cost_cents": 18.0, "charged_cents": 16.0}}
    r.started_at, r.completed_at = STARTED, STARTED + 42.5
    for k, v in over.items():
        setattr(r, k, v)
    return r


def test_start_names_the_job_the_source_and_the_target() -> None:
    event = to_dict(start_event(facts()))
    check_spec_shape(event)
    assert event["eventType"] == "START"
    assert event["eventTime"] == "2026-09-21T14:13:20.250Z"
    assert event["job"] == {**event["job"], "namespace": "sixtyfour-sync", "name": "crm.enrich_leads"}
    assert event["job"]["facets"]["jobType"]["integration"] == "SIXTYFOUR_SYNC"
    assert event["job"]["facets"]["documentation"]["description"] == "Work emails for new leads"
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(SOURCE.namespace, SOURCE.name)]
    (out,) = event["outputs"]
    assert (out["namespace"], out["name"]) == (TARGET.namespace, TARGET.name)
    assert "outputStatistics" not in out.get("outputFacets", {})
    assert [(f["name"], f.get("type")) for f in out["facets"]["schema"]["fields"]] == [
        ("lead_id", None),
        ("email", "VARCHAR"),
    ]
    own = event["run"]["facets"][FACET_NAME]
    assert (own["run_id"], own["status"], own["sync"], own["tier"]) == (RUN_ID, "running", "enrich_leads", "low")


def test_column_lineage_each_enriched_column_comes_from_the_inputs_sent() -> None:
    (out,) = to_dict(start_event(facts()))["outputs"]
    lineage = out["facets"]["columnLineage"]

    def sources(column: str) -> list[tuple[str, str, str]]:
        return [
            (i["name"], i["field"], i["transformations"][0]["subtype"])
            for i in lineage["fields"][column]["inputFields"]
        ]

    for column in ("email", "email_confidence"):
        assert sources(column) == [
            (SOURCE.name, "first_name", "TRANSFORMATION"),
            (SOURCE.name, "company", "TRANSFORMATION"),
        ]
    assert sources("lead_id") == [(SOURCE.name, "lead_id", "IDENTITY")]
    hashed = lineage["fields"]["_sixtyfour_input_hash"]["inputFields"]
    assert {i["field"] for i in hashed} == {"first_name", "company"}
    assert all(i["transformations"][0]["masking"] for i in hashed)
    assert [(i["field"], i["transformations"][0]["subtype"]) for i in lineage["dataset"]] == [("lead_id", "JOIN")]


@pytest.mark.parametrize(
    "over",
    [{"input_columns": []}, {"inputs": [SOURCE, DatasetId("duckdb://wh.duckdb", "wh.main.accounts")]}],
    ids=["inputs unknown", "a query over two tables"],
)
def test_no_column_lineage_when_the_inputs_do_not_say_which_column_is_which(over: dict[str, Any]) -> None:
    (out,) = to_dict(start_event(facts(**over)))["outputs"]
    assert "columnLineage" not in out["facets"]
    assert out["facets"]["schema"]["fields"]


def test_complete_carries_the_rows_written_and_the_summarys_numbers() -> None:
    done = result(rows_released=1)
    done.resumed = ResumedWork(jobs=1, rows_merged=2, charged_cents=4.0)
    event = to_dict(end_event(facts(), done, ended_at=STARTED + 99))
    check_spec_shape(event)
    assert event["eventType"] == "COMPLETE"
    assert event["eventTime"] == "2026-09-21T14:14:02.750Z"  # when the sync completed, not when it was sent
    (out,) = event["outputs"]
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 9 + 2 + 1
    own = event["run"]["facets"][FACET_NAME]
    summary = done.to_dict()
    for key in (
        "rows_selected", "rows_sent", "rows_enriched", "rows_failed", "rows_merged", "rows_unsent",
        "estimated_cost_cents", "charged_cents", "charged_later_cents", "replays", "tiers",
    ):  # fmt: skip
        assert own[key] == summary[key], key
    assert (own["status"], own["rows_written"], own["resumed_charged_cents"]) == ("ok", 12, 4.0)
    assert "errorMessage" not in event["run"]["facets"]
    assert event["run"]["runId"] == to_dict(start_event(facts()))["run"]["runId"]


def test_a_partial_sync_completes_and_says_what_is_left() -> None:
    partial = result(status="partial")
    partial.jobs = [JobOutcome("j1", "f1.jsonl", 5, "submitted", task_id="t1")]
    event = to_dict(end_event(facts(), partial, ended_at=STARTED + 60))
    assert event["eventType"] == "COMPLETE"
    own = event["run"]["facets"][FACET_NAME]
    assert (own["status"], own["jobs_in_flight"]) == ("partial", 1)


@pytest.mark.parametrize(
    ("status", "fail_on_budget", "expected"),
    [
        ("ok", False, "COMPLETE"),
        ("nothing_to_do", False, "COMPLETE"),
        ("partial", False, "COMPLETE"),
        ("budget_reached", False, "COMPLETE"),
        ("budget_reached", True, "FAIL"),
        ("locked", False, "COMPLETE"),
        ("failed", False, "FAIL"),
        ("no_credits", False, "FAIL"),
        ("interrupted", False, "ABORT"),
        (None, False, "FAIL"),
    ],
)
def test_how_each_outcome_ends_the_run(status: str | None, fail_on_budget: bool, expected: str) -> None:
    assert end_type(status, fail_on_budget=fail_on_budget).value == expected


def test_fail_carries_the_errors_without_secrets() -> None:
    secret = "sk-live-lineage-0123456789"
    register_secret(secret)
    failed = result(status="failed", errors=[f"the API refused key {secret}", "column 'nope' is not in the source"])
    event = to_dict(end_event(facts(), failed, ended_at=STARTED + 5))
    check_spec_shape(event)
    assert event["eventType"] == "FAIL"
    message = event["run"]["facets"]["errorMessage"]
    assert message["programmingLanguage"] == "PYTHON"
    assert "column 'nope' is not in the source" in message["message"]
    assert secret not in json.dumps(event)
    assert "outputStatistics" not in event["outputs"][0].get("outputFacets", {})


def test_a_sync_the_run_stopped_under_fails_with_the_runs_error() -> None:
    event = to_dict(end_event(facts(), None, ended_at=STARTED + 3, error="KeyboardInterrupt: "))
    assert event["eventType"] == "FAIL"
    assert event["eventTime"] == "2026-09-21T14:13:23.250Z"
    assert event["run"]["facets"]["errorMessage"]["message"] == "KeyboardInterrupt: "
    assert event["run"]["facets"][FACET_NAME]["status"] == "failed"


def test_the_run_id_is_a_uuid7_of_the_start_time_tied_to_the_tools_run() -> None:
    one = uuid.UUID(run_uuid(RUN_ID, "enrich_leads", STARTED))
    assert (one.version, one.variant) == (7, uuid.RFC_4122)
    assert one.int >> 80 == int(STARTED * 1000)
    assert str(one) == run_uuid(RUN_ID, "enrich_leads", STARTED)
    assert str(one) != run_uuid(RUN_ID, "enrich_companies", STARTED)
    assert str(one) != run_uuid("20261201T091334Z-00000000", "enrich_leads", STARTED)


def test_the_parent_run_of_an_orchestrator() -> None:
    parent_id = str(uuid.uuid4())
    event = to_dict(start_event(facts(parent=Parent("airflow-prod", "daily.enrich", parent_id))))
    parent = event["run"]["facets"]["parent"]
    check_facet("parent", parent)
    assert parent["run"]["runId"] == parent_id
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("airflow-prod", "daily.enrich")
    assert parent["root"]["job"]["name"] == "daily.enrich"  # no root given: the parent is the root


def test_the_custom_facet_matches_its_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    import sixtyfour_sync.lineage as pkg

    schema = json.loads((Path(pkg.__file__).parent / "SixtyfourSyncRunFacet.json").read_text())
    run_facet = {  # OpenLineage.json's RunFacet, as far as a custom facet is concerned: a BaseFacet
        "$id": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
        "$defs": {"RunFacet": {"type": "object", "required": ["_producer", "_schemaURL"]}},
    }
    registry = referencing.Registry().with_resource(
        run_facet["$id"],
        referencing.Resource.from_contents(run_facet, default_specification=referencing.jsonschema.DRAFT202012),
    )
    validator = jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/SixtyfourSyncRunFacet"}, registry=registry)
    for event in (start_event(facts()), end_event(facts(), result(), ended_at=STARTED + 1)):
        own = to_dict(event)["run"]["facets"][FACET_NAME]
        assert own["_schemaURL"].endswith(
            "/sixtyfour_sync/lineage/SixtyfourSyncRunFacet.json#/$defs/SixtyfourSyncRunFacet"
        )
        validator.validate(own)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"_producer": "https://x", "_schemaURL": "https://y", "run_id": RUN_ID})
