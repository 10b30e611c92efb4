"""``evaluate`` end to end against the emulator's ground truth, on DuckDB and PostgreSQL: a run, a stratified
sample, labels written from the truth with deliberate errors, exact counts, a threshold that reaches the target
precision, the scores in the ledger and the report, and a malformed labels file refused with located errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.evaluate.normalise import Tolerances
from sixtyfour_sync.evaluate.score import Outcome, score_answer
from tests.e2e.conftest import E2EProject, lead_rows, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

STRUCT: dict[str, Any] = {
    "email": "The individual's email address",
    "title": "The individual's job title",
    "employee_count": {"description": "Employees at their company", "type": "int"},
}
COLUMNS = ["first_name", "last_name", "company", "domain"]
FIELDS = list(STRUCT)


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(
        api_keys=frozenset({api_key}), job_seconds=0.2, failure_rate=0.1, seed=7, answer_errors=True
    )


def _truth(project: E2EProject, n: int) -> dict[int, dict[str, Any]]:
    rows = [dict(zip(["lead_id", *COLUMNS], r[:5], strict=True)) for r in lead_rows(n)]
    truth = project.emulator.truth(STRUCT, rows, columns=COLUMNS)
    return {int(r["lead_id"]): t for r, t in zip(rows, truth, strict=True)}


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _json(out: str) -> dict[str, Any]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]


def test_sample_label_evaluate_with_exact_counts(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 150)
    assert run_cli(project, "run", "--yes").returncode == 0
    sample_path = project.dir / "sample.csv"
    out = run_cli(project, "evaluate", "enrich_leads", "--sample", "60", "-o", str(sample_path))
    assert out.returncode == 0, out.stderr
    header, rows = _read(sample_path)
    assert header == [
        "lead_id", "_sixtyfour_tier", "_sixtyfour_band",
        "email_answer", "email_confidence", "email",
        "title_answer", "title_confidence", "title",
        "employee_count_answer", "employee_count_confidence", "employee_count",
    ]  # fmt: skip
    assert len(rows) == 60 and len({r["lead_id"] for r in rows}) == 60
    assert all(r["email"] == r["title"] == r["employee_count"] == "" for r in rows)  # left to fill
    enriched = {
        int(r[0]) for r in wh.query("SELECT lead_id FROM {t:leads_enriched} WHERE _sixtyfour_status = 'enriched'")
    }
    assert {int(r["lead_id"]) for r in rows} <= enriched
    # stratified: several bands of the low tier; the same rows again with the same seed
    assert len({r["_sixtyfour_band"] for r in rows}) >= 3 and {r["_sixtyfour_tier"] for r in rows} == {"low"}
    again = project.dir / "again.csv"
    assert run_cli(project, "evaluate", "enrich_leads", "--sample", "60", "-o", str(again)).returncode == 0
    assert _read(again)[1] == rows

    # Label from the truth; a person's slips: other case and spaces (still right), 3 wrong labels, 4 left empty.
    truth = _truth(project, 150)
    stored = {
        int(r[0]): r[1:]
        for r in wh.query(
            "SELECT lead_id, email, title, employee_count, email_confidence, title_confidence, "
            "employee_count_confidence FROM {t:leads_enriched}"
        )
    }
    labelled = [int(r["lead_id"]) for r in rows]
    # three failed rows labelled too: their answers are missing
    failed = sorted(k for k, v in stored.items() if v[0] is None and k not in labelled)[:3]
    labels_path = project.dir / "labels.csv"
    expected: dict[str, dict[str, int]] = {f: {"correct": 0, "wrong": 0, "missing": 0} for f in FIELDS}
    scored: list[tuple[str, int | None, Outcome]] = []
    with labels_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["lead_id", *FIELDS])
        for i, key in enumerate(labelled + failed):
            label: dict[str, Any] = dict(truth[key])
            if i % 5 == 0:
                label["email"] = "  " + str(label["email"]).upper() + " "
            if i in (1, 2, 3):
                label["title"] = "Chief Pastry Officer"
            if i in (4, 5, 6, 7):
                label["employee_count"] = ""
            writer.writerow([key, *(label[f] for f in FIELDS)])
            for j, name in enumerate(FIELDS):
                outcome = score_answer("int" if name == "employee_count" else "str", stored[key][j], label[name], 0.0)
                if outcome is not None:
                    expected[name][outcome.value] += 1
                    scored.append((name, stored[key][j + 3], outcome))
    # the emulator errs: some answers are wrong, some missing (its answers are its truth otherwise)
    wrong_answers = sum(stored[k][1] != truth[k]["title"] and stored[k][1] is not None for k in labelled)
    assert wrong_answers > 0
    assert expected["title"]["wrong"] == wrong_answers + sum(
        1 for i, k in enumerate(labelled) if i in (1, 2, 3) and stored[k][1] == truth[k]["title"]
    )
    assert (
        expected["employee_count"]["correct"]
        + expected["employee_count"]["wrong"]
        + expected["employee_count"]["missing"]
        == len(labelled) + len(failed) - 4
    )
    assert all(expected[f]["missing"] == 3 for f in FIELDS)

    out = run_cli(
        project, "evaluate", "enrich_leads", "--labels", str(labels_path), "--target-precision", "0.9", "--json"
    )
    assert out.returncode == 0, out.stderr
    doc = _json(out.stdout)
    assert doc["rows_labelled"] == doc["rows_scored"] == 63 and doc["unmatched_keys"] == 0
    for name in FIELDS:
        got = doc["fields"][name]
        assert {k: got[k] for k in ("correct", "wrong", "missing")} == expected[name], name
        c, w, m = (expected[name][k] for k in ("correct", "wrong", "missing"))
        assert got["precision"] == pytest.approx(c / (c + w)) and got["coverage"] == pytest.approx(
            (c + w) / (c + w + m)
        )
        assert doc["by_tier"][name]["low"]["correct"] == c
        assert sum(b["correct"] for b in doc["by_band"][name].values()) == c

    # the suggested threshold reaches 0.9 on the labelled answers, and is the lowest that does
    for name in FIELDS:
        s = doc["suggestions"][name]
        t = s["min_confidence"]
        assert t is not None

        def precision(at: int, name: str = name) -> float:
            kept = [o for f, conf, o in scored if f == name and o is not Outcome.MISSING and (conf or 0) >= at]
            return sum(o is Outcome.CORRECT for o in kept) / len(kept)

        assert precision(t) >= 0.9 and s["precision"] == pytest.approx(precision(t))
        assert t == 0 or precision(t - 1) < 0.9
        conf_col = f"{name}_confidence"
        [(gate,)] = wh.query(
            f"SELECT count(*) FROM {{t:leads_enriched}} WHERE {name} IS NOT NULL AND {conf_col} < ?", [t]
        )
        assert s["would_gate"] == gate

    # the scores are in the ledger, one row per field, tier and band, and the report shows them
    ledger = wh.query(
        "SELECT field, tier, band, correct, wrong, missing, suggested_min_confidence FROM "
        "{t:_sixtyfour_sync_evaluations}"
    )
    for name in FIELDS:
        mine = [r for r in ledger if r[0] == name]
        assert sum(r[3] for r in mine) == expected[name]["correct"]
        assert sum(r[4] for r in mine) == expected[name]["wrong"]
        assert {r[6] for r in mine} == {doc["suggestions"][name]["min_confidence"]}
    text = run_cli(project, "evaluate", "enrich_leads", "--labels", str(labels_path), "--no-record")
    assert text.returncode == 0, text.stderr
    assert "by field and confidence band" in text.stdout and "precision" in text.stdout
    assert len(wh.query("SELECT * FROM {t:_sixtyfour_sync_evaluations}")) == len(ledger)  # --no-record
    report = run_cli(project, "report", "-o", str(project.dir / "report.html"))
    assert report.returncode == 0, report.stderr
    assert "Answer quality" in (project.dir / "report.html").read_text()


def test_a_malformed_labels_file_is_refused_with_located_errors(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    assert run_cli(project, "run", "--yes").returncode == 0
    bad = project.dir / "labels.csv"
    bad.write_text(
        "lead_id,email,employee_count,colour\n"
        "1,ada@acme.com,12,red\n"
        "2,grace@globex.io,lots,blue\n"
        "1,again@acme.com,3,green\n"
    )
    out = run_cli(project, "evaluate", "enrich_leads", "--labels", str(bad))
    assert out.returncode == 1
    err = " ".join(out.stderr.split())
    assert f"{bad}:1: column colour: 'colour' is neither a key column nor a struct field of enrich_leads" in err
    # the header problem stops the read; fixed, the rows' problems are all listed
    bad.write_text(
        "lead_id,email,employee_count\n1,ada@acme.com,12\n2,grace@globex.io,lots\n1,again@acme.com,3\n,x@y.z,1\n"
    )
    out = run_cli(project, "evaluate", "enrich_leads", "--labels", str(bad), "--log-format", "json")
    assert out.returncode == 1
    err = " ".join(out.stderr.split())
    assert f"{bad}:3: column employee_count: 'lots' is not a number" in err
    assert f"{bad}:4: column lead_id: key 1 is labelled twice (first on line 2)" in err
    assert f"{bad}:5: column lead_id: the key is empty" in err
    missing = project.dir / "nokey.csv"
    missing.write_text("email\nada@acme.com\n")
    out = run_cli(project, "evaluate", "enrich_leads", "--labels", str(missing))
    assert out.returncode == 1 and "the key column 'lead_id' is missing" in out.stderr
    assert not wh.exists("_sixtyfour_sync_evaluations") or not wh.query("SELECT * FROM {t:_sixtyfour_sync_evaluations}")


def test_labels_table(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    assert run_cli(project, "run", "--yes").returncode == 0
    truth = _truth(project, 30)
    wh.execute("CREATE TABLE {t:lead_labels} (lead_id BIGINT, title VARCHAR(100))")
    wh.executemany("INSERT INTO {t:lead_labels} VALUES (?, ?)", [(k, truth[k]["title"]) for k in range(1, 31)])
    table = f"{wh.schema}.lead_labels" if wh.schema else "lead_labels"
    out = run_cli(project, "evaluate", "enrich_leads", "--labels-table", table, "--json")
    assert out.returncode == 0, out.stderr
    doc = _json(out.stdout)
    stored = dict(wh.query("SELECT lead_id, title FROM {t:leads_enriched}"))
    right = sum(stored[k] == truth[k]["title"] for k in range(1, 31))
    missing = sum(stored[k] is None for k in range(1, 31))
    assert doc["fields"]["title"]["correct"] == right and doc["fields"]["title"]["missing"] == missing
    assert doc["fields"]["title"]["wrong"] == 30 - right - missing and list(doc["fields"]) == ["title"]
    assert Tolerances().of("title", "str") == 0.0
