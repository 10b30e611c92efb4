"""Sync definitions: valid files load, every problem is reported at once with file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sixtyfour_sync.config.models import build_api_config, load_models, parse_duration
from sixtyfour_sync.errors import ConfigError

GOOD = """\
profile: local
syncs:
  - name: enrich_leads
    tags: [daily]
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, last_name, company]
      where: "country = 'US'"
    struct:
      email: The individual's email address
      employee_count: {description: Employees at their company, type: integer}
      skills: {description: Skills, type: "list[str]"}
    tier: low
    field_confidence: true
    target:
      table: leads_enriched
      prefix: "sf_"
    refresh:
      when: stale
      max_age: 90d
      retry_failed_after: 30d
      limit: 1000
    budget:
      max_cost_cents: 5000
    chunk_rows: 5000
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    path = models / name
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_defaults_and_derived_values(tmp_path: Path) -> None:
    _write(tmp_path, "leads.yml", GOOD)
    [loaded] = load_models(tmp_path)
    spec = loaded.spec
    assert loaded.profile == "local"
    assert loaded.line == 3
    assert spec.source.key == ["lead_id"]
    assert spec.struct["employee_count"].type == "int"
    assert spec.struct["skills"].is_json
    assert spec.refresh.max_age is not None and spec.refresh.max_age.days == 90
    assert spec.output_columns()[:3] == ["sf_email", "sf_employee_count", "sf_skills"]
    assert "sf_email_confidence" in spec.output_columns()
    assert spec.output_columns()[-6:][0] == "_sixtyfour_sf_status"  # bookkeeping follows target.prefix
    config = build_api_config(spec, ["lead_id", "first_name", "last_name", "company"])
    assert config == {
        "struct": {
            "email": "The individual's email address",
            "employee_count": {"description": "Employees at their company", "type": "int"},
            "skills": {"description": "Skills", "type": "list[str]"},
        },
        "tier": "low",
        "field_confidence": True,
        "columns": ["first_name", "last_name", "company"],
    }


def test_spec_hash_changes_with_the_question_not_with_the_target(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    base = load_models(tmp_path)[0].spec.spec_hash()
    _write(tmp_path, "a.yml", GOOD.replace("limit: 1000", "limit: 5"))
    assert load_models(tmp_path)[0].spec.spec_hash() == base
    _write(tmp_path, "a.yml", GOOD.replace("tier: low", "tier: medium"))
    assert load_models(tmp_path)[0].spec.spec_hash() != base


def test_every_problem_in_every_file_is_listed_with_line_and_path(tmp_path: Path) -> None:
    bad = GOOD.replace("tier: low", "tier: xhigh").replace("endpoint: people", "endpoint: company")
    bad = bad.replace("    chunk_rows: 5000\n", "    chunk_rows: 500000\n    colour: blue\n")
    _write(tmp_path, "a.yml", bad)
    _write(tmp_path, "b.yml", "syncs:\n  - name: x\n    endpoint: people\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    text = str(info.value)
    problems = info.value.problems
    assert any(p.path == "syncs.0.colour" and "unknown key" in p.message and p.line == 28 for p in problems)
    assert any(p.path == "syncs.0.chunk_rows" and p.line == 27 for p in problems)
    assert any("b.yml" in (p.file or "") and p.path == "syncs.0.source" for p in problems)
    assert any(p.path == "syncs.0.tier" and "not offered by the company endpoint" in p.message for p in problems)
    assert "a.yml" in text and "b.yml" in text


def test_tier_is_checked_per_endpoint(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("endpoint: people", "endpoint: company").replace("tier: low", "tier: xhigh"))
    with pytest.raises(ConfigError, match="tier 'xhigh' is not offered by the company endpoint"):
        load_models(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("key: lead_id", 'key: "lead_id; drop table x"'), "not a safe column name"),
        (("email: The", '"e-mail": The'), "not a safe column name"),
        (("type: integer", "type: decimal"), "unknown type 'decimal'"),
        (("table: leads\n", "table: leads\n      sql: select 1\n"), "exactly one of table, sql or ref"),
        (("max_age: 90d", "max_age: ninety days"), "not a duration"),
        (('prefix: "sf_"', 'prefix: "1x"'), "prefix '1x'"),
        (("skills:", "company:"), "name of a source column"),
    ],
)
def test_bad_values_are_explained(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    _write(tmp_path, "a.yml", GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_models(tmp_path)


def test_webhook_must_be_https(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("tier: low", "tier: low\n    webhook_url: http://example.com/h"))
    with pytest.raises(ConfigError, match="https"):
        load_models(tmp_path)


def test_duplicate_sync_names_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    _write(tmp_path, "b.yml", GOOD)
    with pytest.raises(ConfigError, match="duplicate sync name 'enrich_leads'"):
        load_models(tmp_path)


def test_duplicate_yaml_key_and_malformed_yaml(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("    tier: low\n", "    tier: low\n    tier: medium\n"))
    _write(tmp_path, "b.yml", "syncs:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    text = str(info.value)
    assert "duplicate key 'tier'" in text
    assert "b.yml:2" in text or "b.yml:3" in text


def test_env_vars_render_in_models(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("table: leads_enriched", "table: \"{{ env_var('TARGET_T', 'dflt') }}\""))
    assert load_models(tmp_path, env={"TARGET_T": "t_from_env"})[0].spec.target.table == "t_from_env"
    assert load_models(tmp_path, env={})[0].spec.target.table == "dflt"


def test_no_models_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no sync definitions"):
        load_models(tmp_path)


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("2w", 1209600), (30, 30)])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_dbt_properties_files_in_models_are_left_to_dbt(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    _write(tmp_path, "schema.yml", "version: 2\nmodels:\n  - name: stg_leads\n    description: x\n")
    _write(tmp_path, "other.yml", "colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    assert [p.file.endswith("other.yml") for p in info.value.problems] == [True]
    (tmp_path / "models" / "other.yml").unlink()
    assert [s.spec.name for s in load_models(tmp_path)] == ["enrich_leads"]
