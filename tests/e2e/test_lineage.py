"""OpenLineage events of real runs: `sixtyfour-sync run` in a child process against the emulator over a socket,
on DuckDB and PostgreSQL, sending to a receiver on 127.0.0.1 (OPENLINEAGE_URL) or to a file (OPENLINEAGE_CONFIG),
exactly as the OpenLineage client reads its configuration."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import make_duckdb, make_postgres, setup_leads

pytest.importorskip("openlineage.client")


class _Capture(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.path, body.decode()))  # type: ignore[attr-defined]
        self.send_response(201)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A lineage endpoint on 127.0.0.1 keeping every POST (path, body)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.posts  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _events(posts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    assert {path for path, _ in posts} <= {"/api/v1/lineage"}
    return [json.loads(body) for _, body in posts]


def _artifact(project: E2EProject) -> dict[str, Any]:
    return json.loads((project.dir / "target" / "sixtyfour_run_results.json").read_text())


def _output(event: dict[str, Any]) -> dict[str, Any]:
    (out,) = event["outputs"]
    return out


def test_a_run_sends_start_then_complete_with_its_numbers(
    project: E2EProject, receiver: tuple[str, list[tuple[str, str]]]
) -> None:
    url, posts = receiver
    wh = make_duckdb(project)
    setup_leads(wh, 120)
    env = {"OPENLINEAGE_URL": url, "OPENLINEAGE_NAMESPACE": "crm-prod"}
    done = run_cli(project, "run", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    start, complete = _events(posts)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert uuid.UUID(start["run"]["runId"]).version == 7
    for event in (start, complete):
        assert (event["job"]["namespace"], event["job"]["name"]) == ("crm-prod", f"{project.dir.name}.enrich_leads")
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("duckdb://wh.duckdb", "wh.main.leads")]
        assert (_output(event)["namespace"], _output(event)["name"]) == ("duckdb://wh.duckdb", "wh.main.leads_enriched")

    written = wh.query("SELECT count(*) FROM {t:leads_enriched}")[0][0]
    assert written == 120
    assert _output(complete)["outputFacets"]["outputStatistics"]["rowCount"] == written
    assert "outputStatistics" not in _output(start).get("outputFacets", {})

    schema = {f["name"]: f.get("type") for f in _output(complete)["facets"]["schema"]["fields"]}
    assert {"lead_id", "email", "title", "employee_count", "email_confidence"} <= set(schema)
    assert schema["employee_count"] == "BIGINT"
    lineage = _output(complete)["facets"]["columnLineage"]["fields"]
    for column in ("email", "title", "employee_count", "title_confidence"):
        inputs = [(i["name"], i["field"]) for i in lineage[column]["inputFields"]]
        assert inputs == [("wh.main.leads", c) for c in ("first_name", "last_name", "company", "domain")]
    assert [i["field"] for i in lineage["lead_id"]["inputFields"]] == ["lead_id"]

    own = complete["run"]["facets"]["sixtyfour_sync"]
    artifact = _artifact(project)
    (sync,) = artifact["results"]
    assert own["run_id"] == artifact["run_id"] == start["run"]["facets"]["sixtyfour_sync"]["run_id"]
    assert own["status"] == sync["status"] == "ok"
    assert (own["rows_selected"], own["rows_sent"], own["rows_enriched"], own["rows_merged"]) == (
        sync["rows"]["selected"], sync["rows"]["sent"], sync["rows"]["enriched"], sync["rows"]["merged"],
    )  # fmt: skip
    assert (own["estimated_cost_cents"], own["charged_cents"]) == (sync["estimated_cost_cents"], sync["charged_cents"])
    assert own["charged_cents"] > 0 and own["rows_written"] == written

    posts.clear()  # nothing changed: the next run is a run too, and writes nothing
    again = run_cli(project, "run", "--yes", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    start2, complete2 = _events(posts)
    assert start2["run"]["runId"] != start["run"]["runId"]
    assert complete2["run"]["facets"]["sixtyfour_sync"]["status"] == "nothing_to_do"
    assert _output(complete2)["outputFacets"]["outputStatistics"]["rowCount"] == 0


def test_a_failing_sync_sends_fail_with_its_error(
    project: E2EProject, receiver: tuple[str, list[tuple[str, str]]]
) -> None:
    url, posts = receiver
    wh = make_duckdb(project)
    setup_leads(wh, 10)
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("columns: [first_name, last_name, company, domain]", "columns: [nope]"))
    done = run_cli(project, "run", "--yes", env={"OPENLINEAGE_URL": url})
    assert done.returncode == 1, done.stdout + done.stderr
    start, fail = _events(posts)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert fail["job"]["namespace"] == "sixtyfour-sync"
    assert "'nope'" in fail["run"]["facets"]["errorMessage"]["message"]
    assert fail["run"]["facets"]["sixtyfour_sync"]["status"] == "failed"
    assert "outputStatistics" not in _output(fail).get("outputFacets", {})
    assert not wh.exists("leads_enriched")


def test_the_file_transport_of_an_openlineage_config(project: E2EProject, tmp_path: Path) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 15)
    events = tmp_path / "events" / "lineage.jsonl"
    events.parent.mkdir()
    config = tmp_path / "openlineage.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {events}\n  append: true\n")
    done = run_cli(project, "run", "--yes", env={"OPENLINEAGE_CONFIG": str(config)})
    assert done.returncode == 0, done.stdout + done.stderr
    start, complete = (json.loads(line) for line in events.read_text().splitlines())
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert _output(complete)["outputFacets"]["outputStatistics"]["rowCount"] == 15


def test_an_unreachable_endpoint_is_a_warning_and_the_run_is_whole(project: E2EProject, tmp_path: Path) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 12)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "openlineage.yml"
    config.write_text(
        f"transport:\n  type: http\n  url: http://127.0.0.1:{port}\n  retry: {{total: 0}}\n  timeout: 2\n"
    )
    done = run_cli(project, "run", "--yes", env={"OPENLINEAGE_CONFIG": str(config)})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "OpenLineage: sending the START event of sync enrich_leads failed" in out
    assert out.count("OpenLineage: sending") == 1
    assert wh.query("SELECT count(*) FROM {t:leads_enriched}")[0][0] == 12


def test_postgres_names_and_no_password_in_any_event(
    project: E2EProject, receiver: tuple[str, list[tuple[str, str]]]
) -> None:
    url, posts = receiver
    for wh in make_postgres(project):
        setup_leads(wh, 20)
        password = f"pw-{uuid.uuid4().hex}"
        profiles = project.dir / "profiles.yml"
        profiles.write_text(
            profiles.read_text().replace(
                "user: postgres\n", "user: postgres\n      password: \"{{ env_var('PGPASSWORD') }}\"\n"
            )
        )  # the server trusts 127.0.0.1: the password is accepted and ignored, and must not travel
        assert "password: \"{{ env_var('PGPASSWORD') }}\"" in profiles.read_text()
        done = run_cli(project, "run", "--yes", env={"OPENLINEAGE_URL": url, "PGPASSWORD": password})
        assert done.returncode == 0, done.stdout + done.stderr
        assert posts and all(password not in body for _, body in posts)
        start, complete = _events(posts)
        namespace = "postgres://127.0.0.1:5432"
        assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [(namespace, f"test.{wh.schema}.leads")]
        assert (_output(complete)["namespace"], _output(complete)["name"]) == (
            namespace,
            f"test.{wh.schema}.leads_enriched",
        )
        lineage = _output(complete)["facets"]["columnLineage"]["fields"]
        assert {i["name"] for i in lineage["email"]["inputFields"]} == {f"test.{wh.schema}.leads"}
        assert _output(complete)["outputFacets"]["outputStatistics"]["rowCount"] == 20
        assert {f["name"]: f.get("type") for f in _output(complete)["facets"]["schema"]["fields"]}["email"] == "TEXT"


def test_mariadb_through_sqlalchemy_is_named_as_mysql(
    project: E2EProject, receiver: tuple[str, list[tuple[str, str]]]
) -> None:
    from tests.e2e.warehouses import make_mariadb

    url, posts = receiver
    for wh in make_mariadb(project):
        setup_leads(wh, 8)
        done = run_cli(project, "run", "--yes", env={"OPENLINEAGE_URL": url})
        assert done.returncode == 0, done.stdout + done.stderr
        start, complete = _events(posts)
        assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [
            ("mysql://127.0.0.1:3306", f"{wh.schema}.leads")
        ]
        assert (_output(complete)["namespace"], _output(complete)["name"]) == (
            "mysql://127.0.0.1:3306",
            f"{wh.schema}.leads_enriched",
        )
        assert _output(complete)["outputFacets"]["outputStatistics"]["rowCount"] == 8
