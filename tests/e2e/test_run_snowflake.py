"""The pipeline on Snowflake's code path, with fakesnow standing in for the warehouse (in process)."""

from __future__ import annotations

import uuid

import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, lead_rows

fakesnow = pytest.importorskip("fakesnow")


def test_snowflake_run_then_nothing_to_do(project: E2EProject) -> None:
    import snowflake.connector

    db, schema = f"DB_{uuid.uuid4().hex[:8]}".upper(), f"S_{uuid.uuid4().hex[:8]}".upper()
    with fakesnow.patch():
        con = snowflake.connector.connect(account="fakesnow", user="u", password="p")
        cur = con.cursor()
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE SCHEMA {db}.{schema}")
        cur.execute(
            f"CREATE TABLE {db}.{schema}.LEADS (LEAD_ID NUMBER, FIRST_NAME TEXT, LAST_NAME TEXT, COMPANY TEXT, "
            "DOMAIN TEXT, COUNTRY TEXT)"
        )
        cur.executemany(f"INSERT INTO {db}.{schema}.LEADS VALUES (%s, %s, %s, %s, %s, %s)", lead_rows(40))
        con.close()
        (project.dir / "profiles.yml").write_text(
            "sixtyfour:\n  target: sf\n  outputs:\n    sf:\n      type: snowflake\n      account: fakesnow\n"
            f"      user: loader\n      password: not-a-real-password\n      database: {db}\n      schema: {schema}\n"
        )
        first = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
        assert first.exit_code == 0, (first.syncs[0].errors, first.error)
        assert first.syncs[0].rows_sent == 40
        again = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
        assert again.syncs[0].status == "nothing_to_do"
        con = snowflake.connector.connect(account="fakesnow", user="u", password="p", database=db, schema=schema)
        cur = con.cursor()
        cur.execute("SELECT COUNT(*), COUNT(EMAIL) FROM LEADS_ENRICHED")
        total, emails = cur.fetchone()
        con.close()
    assert total == 40
    assert 0 < emails <= 40
