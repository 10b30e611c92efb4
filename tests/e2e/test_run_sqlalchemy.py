"""The pipeline through the generic SQLAlchemy adapter: SQLite and MariaDB (127.0.0.1:3306)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, lead_rows
from tests.services import require_service

LEADS = (
    "CREATE TABLE leads (lead_id BIGINT PRIMARY KEY, first_name VARCHAR(50), last_name VARCHAR(50), "
    "company VARCHAR(100), domain VARCHAR(100), country VARCHAR(10))"
)


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, project: E2EProject) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{project.dir / 'wh.db'}"
        schema_line = ""
        cleanup = None
    else:
        require_service("mariadb", "127.0.0.1", 3306)
        db = f"e2e_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/")
        with admin.begin() as con:
            con.execute(sa.text(f"CREATE DATABASE `{db}`"))
        url = f"mysql+pymysql://root@127.0.0.1:3306/{db}"
        schema_line = f"      schema: {db}\n"

        def cleanup() -> None:
            with admin.begin() as con:
                con.execute(sa.text(f"DROP DATABASE IF EXISTS `{db}`"))
            admin.dispose()

    engine = sa.create_engine(url)
    with engine.begin() as con:
        con.execute(sa.text(LEADS))
        con.execute(
            sa.text("INSERT INTO leads VALUES (:a, :b, :c, :d, :e, :f)"),
            [dict(zip("abcdef", r, strict=True)) for r in lead_rows(120)],
        )
    engine.dispose()
    (project.dir / "profiles.yml").write_text(
        f'sixtyfour:\n  target: db\n  outputs:\n    db:\n      type: sqlalchemy\n      url: "{url}"\n{schema_line}'
    )
    try:
        yield url
    finally:
        if cleanup:
            cleanup()


def test_run_resume_and_nothing_to_do(project: E2EProject, database_url: str) -> None:
    project.write_model(chunk_rows=50)
    first = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert first.exit_code == 0, [(s.status, s.errors, s.warnings) for s in first.syncs]
    assert first.syncs[0].rows_sent == 120
    engine = sa.create_engine(database_url)
    with engine.connect() as con:
        rows = con.execute(
            sa.text("SELECT lead_id, email, _sixtyfour_status FROM leads_enriched ORDER BY lead_id")
        ).fetchall()
        con.execute(sa.text("UPDATE leads SET company = 'Hooli' WHERE lead_id = 7"))
        con.commit()
    engine.dispose()
    assert len(rows) == 120
    assert all("@" in r[1] for r in rows if r[2] == "enriched")
    second = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert second.syncs[0].rows_by_reason == {"changed": 1}
    third = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert third.syncs[0].status == "nothing_to_do"
