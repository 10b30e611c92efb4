"""Wide answers parse within the local memory cap: hundreds of fields with confidences, inline previews (written
as JSONL) and downloaded files, merged whole. The JSON reader extracts every wanted field in one pass per record
(one pass per field re-parsed each record once per column, and 800 fields ran out of memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.engine.results.parse import parse_result
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import make_duckdb, setup_leads


@pytest.fixture(params=["inline", "downloaded"])
def delivery(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator_settings(api_key: str, delivery: str) -> EmulatorSettings:
    return EmulatorSettings(
        api_keys=frozenset({api_key}),
        job_seconds=0.05,
        failure_rate=0.0,
        seed=9,
        preview_max_rows=25 if delivery == "inline" else 0,
        max_config_chars=300_000,
    )


def _model(fields: int) -> str:
    struct = "\n".join(f"      field_{i:04d}: Fact number {i} about the person" for i in range(fields))
    return (
        "syncs:\n  - name: wide\n    endpoint: people\n    source:\n      table: leads\n      key: lead_id\n"
        "      columns: [first_name, last_name, company, domain]\n    struct:\n"
        f"{struct}\n    field_confidence: true\n    target:\n      table: leads_enriched\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("fields", [100, 500, 800])
def test_wide_answers_merge_whole(project: E2EProject, delivery: str, fields: int) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 20)
    (project.dir / "models" / "leads.yml").write_text(_model(fields))
    result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert result.exit_code == 0, result.to_dict()
    s = result.syncs[0]
    assert s.rows_enriched == 20 and not s.jobs_needing_attention
    last = f"field_{fields - 1:04d}"
    rows = wh.query(f"SELECT count({last}), count({last}_confidence) FROM {{t:leads_enriched}}")
    assert rows == [(20, 20)]


def test_a_15_mb_json_lines_result_of_800_fields_with_confidences_parses(tmp_path: Path) -> None:
    """The file the API may send (every field and its confidence, as JSON Lines), under the 128 MB cap."""
    fields = 800
    struct = {f"field_{i:04d}": StructField(description=f"fact {i}") for i in range(fields)}
    path = tmp_path / "wide.jsonl"
    with path.open("w") as out:
        for lead in range(1, 1001):
            row: dict[str, object] = {"lead_id": lead, "first_name": "Ada", "notes": "x" * 200}
            for name in struct:
                row[name] = f"{name} of lead {lead}"
                row[f"{name}_confidence"] = lead % 101
            out.write(json.dumps(row) + "\n")
    assert path.stat().st_size > 15_000_000
    parsed = parse_result(path, fmt="jsonl", key_types={"lead_id": pa.int64()}, struct=struct, field_confidence=True)
    assert parsed.table.num_rows == 1000 and parsed.enriched == 1000
    assert parsed.table.num_columns == 1 + 2 * fields + 1
    assert parsed.table.column("field_0799_confidence").to_pylist()[:3] == [1, 2, 3]


def test_1600_result_columns_parse_from_csv(tmp_path: Path) -> None:
    fields = 800
    struct = {f"f{i}": StructField(description=f"fact {i}") for i in range(fields)}
    names = ["lead_id", *[c for f in struct for c in (f, f"{f}_confidence")]]
    path = tmp_path / "wide.csv"
    with path.open("w") as out:
        out.write(",".join(names) + "\n")
        for lead in range(1, 201):
            out.write(",".join([str(lead), *[v for i in range(fields) for v in (f"v{i}", str(i % 100))]]) + "\n")
    parsed = parse_result(path, fmt="csv", key_types={"lead_id": pa.int64()}, struct=struct, field_confidence=True)
    assert parsed.table.num_rows == 200 and parsed.table.num_columns == 1 + 2 * fields + 1
