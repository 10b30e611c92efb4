"""When lineage is on and what the listener does (sixtyfour_sync/lineage/__init__.py, emitter.py): nothing is
imported unless OpenLineage is configured, a missing client is one warning, a sync is described from its project
and warehouse, and a transport error never reaches the run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

import sixtyfour_sync.lineage as lineage
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.summary import RunResult, SyncResult
from sixtyfour_sync.lineage import NoLineage, configured_by, lineage_listener

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "files", "expected"),
    [
        ({}, [], None),
        ({"OPENLINEAGE_URL": "http://127.0.0.1:5000"}, [], "OPENLINEAGE_URL"),
        ({"OPENLINEAGE_CONFIG": "/etc/ol.yml"}, [], "OPENLINEAGE_CONFIG"),
        ({"OPENLINEAGE__TRANSPORT__TYPE": "console"}, [], "OPENLINEAGE__TRANSPORT__TYPE"),
        ({}, ["cwd/openlineage.yml"], "cwd/openlineage.yml"),
        ({}, ["home/.openlineage/openlineage.yml"], "home/.openlineage/openlineage.yml"),
        ({"SIXTYFOUR_SYNC_OPENLINEAGE": "on"}, [], "SIXTYFOUR_SYNC_OPENLINEAGE"),
        ({"SIXTYFOUR_SYNC_OPENLINEAGE": "off", "OPENLINEAGE_URL": "http://x"}, ["cwd/openlineage.yml"], None),
        ({"OPENLINEAGE_DISABLED": "true", "OPENLINEAGE_URL": "http://x"}, [], None),
        ({"OPENLINEAGE_NAMESPACE": "prod", "OPENLINEAGE_API_KEY": "k"}, [], None),
    ],
)
def test_what_turns_events_on(tmp_path: Path, env: dict[str, str], files: list[str], expected: str | None) -> None:
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("transport: {type: console}\n")
    (tmp_path / "cwd").mkdir(exist_ok=True)
    found = configured_by(env, tmp_path / "cwd", tmp_path / "home")
    assert found == (str(tmp_path / expected) if expected and "/" in expected else expected)


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLINEAGE", "SIXTYFOUR_SYNC_OPENLINEAGE"))}
    return {**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **extra}


def test_without_configuration_the_client_is_never_imported(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import sixtyfour_sync.commands
        from sixtyfour_sync.lineage import lineage_listener
        print(type(lineage_listener()).__name__, "openlineage" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["NoLineage", "False"]


def test_configured_without_the_client_is_one_warning_and_no_events(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("openlineage", "openlineage.client"):  # as if openlineage-python were not installed
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "sixtyfour_sync.lineage.emitter", raising=False)
    monkeypatch.setattr(lineage, "_warned", set())
    env = {"OPENLINEAGE_URL": "http://127.0.0.1:9"}
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync.lineage"):
        first, second = lineage_listener(environ=env), lineage_listener(environ=env)
    assert isinstance(first, NoLineage) and isinstance(second, NoLineage)
    warnings = [r.getMessage() for r in caplog.records if r.name == "sixtyfour_sync.lineage"]
    assert len(warnings) == 1
    assert "OPENLINEAGE_URL asks for OpenLineage events" in warnings[0]
    assert "pip install 'sixtyfour-sync[openlineage]'" in warnings[0]


def test_a_config_file_that_is_not_there_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("openlineage.client")
    monkeypatch.setattr(lineage, "_warned", set())
    missing = tmp_path / "nope.yml"
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync.lineage"):
        found = lineage_listener(environ={"OPENLINEAGE_CONFIG": str(missing)})
    assert isinstance(found, NoLineage)
    assert f"OPENLINEAGE_CONFIG names {missing}, which is not a file" in caplog.text


# ---------------------------------------------------------------------------------------------- the listener
class FakeClient:
    """Records what is emitted; fails every emit when ``error`` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.events: list[Any] = []
        self.attempts = 0
        self.closed = False

    def emit(self, event: Any) -> None:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        self.events.append(event)

    def close(self, timeout: float = -1.0) -> bool:
        self.closed = True
        return True


@pytest.fixture
def duck_project(tmp_path: Path) -> Project:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute("CREATE TABLE leads (lead_id BIGINT, first_name TEXT, company TEXT, country TEXT)")
    con.close()
    (tmp_path / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "leads.yml").write_text(
        textwrap.dedent(
            """
            syncs:
              - name: enrich_leads
                endpoint: people
                source: {table: leads, key: lead_id}
                struct:
                  email: The work email
                  seniority: {description: Years in role, type: int}
                field_confidence: true
                target: {table: leads_enriched, prefix: sf_}
              - name: by_query
                endpoint: company
                source:
                  sql: >-
                    with l as (select * from leads)
                    select l.lead_id, a.name from l join raw.accounts a using (lead_id)
                  key: lead_id
                struct: {industry: The industry}
                target: {table: accounts_enriched}
            """
        )
    )
    return Project.load(tmp_path, env={})


def _listener(client: FakeClient) -> Any:
    pytest.importorskip("openlineage.client")
    from sixtyfour_sync.lineage.emitter import OpenLineageListener

    return OpenLineageListener(client, "sixtyfour-sync", "run")


def test_a_sync_is_described_from_its_project_and_warehouse(duck_project: Project) -> None:
    from sixtyfour_sync.lineage.events import to_dict

    client = FakeClient()
    listener = _listener(client)
    with duck_project:
        listener.sync_started(duck_project, duck_project.syncs[0], "run-1", time.time())
    (start,) = [to_dict(e) for e in client.events]
    assert start["eventType"] == "START"
    assert start["job"]["name"] == f"{duck_project.project_dir.name}.enrich_leads"
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [("duckdb://wh.duckdb", "wh.main.leads")]
    (out,) = start["outputs"]
    assert (out["namespace"], out["name"]) == ("duckdb://wh.duckdb", "wh.main.leads_enriched")
    schema = {f["name"]: f.get("type") for f in out["facets"]["schema"]["fields"]}
    assert schema["sf_seniority"] == "BIGINT" and schema["sf_email_confidence"] == "BIGINT"
    assert "lead_id" in schema and "_sixtyfour_sf_input_hash" in schema
    lineage_fields = out["facets"]["columnLineage"]["fields"]
    # no source.columns: every source column but the key is sent, so each answer comes from all of them
    assert [i["field"] for i in lineage_fields["sf_email"]["inputFields"]] == ["first_name", "company", "country"]


def test_a_query_source_names_the_tables_it_reads(duck_project: Project) -> None:
    from sixtyfour_sync.lineage.events import to_dict

    client = FakeClient()
    listener = _listener(client)
    with duck_project:
        listener.sync_started(duck_project, duck_project.syncs[1], "run-1", time.time())
    (start,) = [to_dict(e) for e in client.events]
    assert sorted(d["name"] for d in start["inputs"]) == ["wh.main.leads", "wh.raw.accounts"]
    assert "columnLineage" not in start["outputs"][0]["facets"]


def test_a_transport_error_is_one_warning_and_the_run_goes_on(
    duck_project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(error=ConnectionError("connection refused by 127.0.0.1:9"))
    listener = _listener(client)
    result = RunResult("run-1")
    with duck_project, caplog.at_level(logging.WARNING, logger="sixtyfour_sync.lineage"):
        for loaded in duck_project.syncs:
            listener.sync_started(duck_project, loaded, "run-1", time.time())
        result.syncs = [SyncResult(s.spec.name, status="ok") for s in duck_project.syncs]
        listener.run_ended(result)  # does not raise
    assert client.attempts == 1  # the first failure stops the run's events: each would wait on the same endpoint
    assert client.closed
    messages = [r.getMessage() for r in caplog.records if r.name == "sixtyfour_sync.lineage"]
    assert messages == [
        "OpenLineage: sending the START event of sync enrich_leads failed (ConnectionError: connection refused by "
        "127.0.0.1:9); this run sends no more lineage events"
    ]


def test_the_end_events_follow_the_runs_outcome(duck_project: Project) -> None:
    client = FakeClient()
    listener = _listener(client)
    result = RunResult("run-1", error="ApiKeyRefusedError: the API refused the key")
    with duck_project:
        for loaded in duck_project.syncs:
            listener.sync_started(duck_project, loaded, "run-1", time.time())
    result.syncs = [SyncResult("enrich_leads", status="ok", rows_merged=3)]  # by_query never got a result
    listener.run_ended(result)
    ends = {e.job.name.rsplit(".", 1)[1]: e for e in client.events[2:]}
    assert ends["enrich_leads"].eventType.value == "COMPLETE"
    assert ends["by_query"].eventType.value == "FAIL"
    assert ends["by_query"].run.facets["errorMessage"].message == "ApiKeyRefusedError: the API refused the key"
    assert client.events[0].run.runId == ends["enrich_leads"].run.runId


def test_the_parent_an_orchestrator_names(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openlineage.client")
    from sixtyfour_sync.lineage.emitter import parent_from

    run, root = str(uuid.uuid4()), str(uuid.uuid4())
    found = parent_from(
        {"OPENLINEAGE_PARENT_ID": f"airflow/daily.enrich/{run}", "OPENLINEAGE_ROOT_PARENT_ID": f"airflow/daily/{root}"}
    )
    assert found is not None and (found.namespace, found.name, found.run_id) == ("airflow", "daily.enrich", run)
    assert found.root is not None and (found.root.name, found.root.run_id) == ("daily", root)
    monkeypatch.setattr(lineage, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync.lineage"):
        assert parent_from({"OPENLINEAGE_PARENT_ID": "airflow/not-a-uuid"}) is None
    assert "OPENLINEAGE_PARENT_ID is not namespace/job/run-uuid" in caplog.text
