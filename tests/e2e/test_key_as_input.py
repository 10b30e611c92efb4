"""A key column may also be an input: a company's natural key (its domain) is its best input.

``source.columns`` listing the key sends it once, under its own name, both to tie results back and in the
config's ``columns`` so it steers the research; the rows come back and merge as any other.
"""

from __future__ import annotations

import json

from sixtyfour_sync import commands as api
from sixtyfour_sync.config.models import SyncSpec, build_api_config
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import make_duckdb

MODEL = """\
syncs:
  - name: enrich_companies
    endpoint: company
    source:
      table: companies
      key: domain
      columns: [name, domain, city]
    struct:
      industry: The company's primary industry
      employee_count: {description: Number of employees, type: int}
    target:
      table: companies_enriched
"""


def test_a_listed_key_is_an_input_and_unlisted_it_only_ties_back() -> None:
    base = {
        "name": "c",
        "endpoint": "company",
        "struct": {"industry": "Industry"},
        "target": {"table": "t"},
    }
    listed = SyncSpec.model_validate({**base, "source": {"table": "s", "key": "domain", "columns": ["name", "domain"]}})
    assert build_api_config(listed, ["name", "domain"])["columns"] == ["name", "domain"]
    plain = SyncSpec.model_validate({**base, "source": {"table": "s", "key": "domain"}})
    assert build_api_config(plain, ["name", "domain"])["columns"] == ["name"]


def test_the_company_endpoint_with_its_domain_as_key_and_input(project: E2EProject) -> None:
    wh = make_duckdb(project)
    wh.execute("CREATE TABLE companies (domain VARCHAR, name VARCHAR, city VARCHAR)")
    wh.executemany(
        "INSERT INTO companies VALUES (?, ?, ?)",
        [(f"co{i}.example", f"Company {i}", "Berlin") for i in range(12)],
    )
    (project.dir / "models" / "leads.yml").write_text(MODEL)
    result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert result.exit_code == 0, result.to_dict()
    s = result.syncs[0]
    assert s.rows_sent == 12 and s.rows_not_returned == 0 and s.rows_unexpected == 0
    (job,) = project.emulator.jobs.values()
    assert job.config["columns"] == ["name", "domain", "city"]  # the key steers the research
    header = job.upload_path.read_text().splitlines()[0]
    assert json.loads(header).keys() >= {"domain", "name", "city"}
    assert list(json.loads(header)).count("domain") == 1  # and travels once
    rows = wh.query("SELECT domain, industry, _sixtyfour_status FROM {t:companies_enriched} ORDER BY domain")
    assert [r[0] for r in rows] == sorted(f"co{i}.example" for i in range(12))
    assert all(r[2] in ("enriched", "failed") for r in rows)
    again = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert again.syncs[0].status == "nothing_to_do"
