"""``sixtyfour-sync demo``: the whole pipeline on sample data, with no key and no network.

It writes a small project (profiles.yml, the example models, a DuckDB file with a few thousand leads and a
few hundred companies), starts the API emulator in this process on 127.0.0.1, then plans and runs the example
syncs exactly as ``sixtyfour-sync plan`` and ``run`` would, and shows a before/after sample of the target, then
measures the answers against the emulator's ground truth (``sixtyfour-sync evaluate``) and writes the report.
"""

from __future__ import annotations

import json
import random
import shlex
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

__all__ = ["label_from_truth", "make_sample", "run_demo", "write_project"]

FIRST = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas", "Mia", "Mateo",
    "Amelia", "Benjamin", "Harper", "Theo", "Evelyn", "Henry", "Priya", "Arjun", "Mei", "Hiroshi", "Fatima",
    "Omar", "Chloe", "Diego", "Ingrid", "Lars", "Amara", "Kwame", "Sofia", "Mohammed", "Grace", "Daniel",
]  # fmt: skip
LAST = [
    "Smith", "Johnson", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Lee", "Walker", "Hall", "Young",
    "Patel", "Nguyen", "Kim", "Chen", "Okafor", "Schmidt", "Rossi", "Dubois", "Silva", "Kowalski", "Tanaka",
    "Haddad", "Andersen", "Murphy", "Cohen", "Singh", "Lopez", "Clark", "Wright", "Mensah", "Novak",
]  # fmt: skip
WORDS_A = [
    "Blue", "North", "Bright", "Iron", "Clear", "Silver", "Summit", "Harbor", "Cedar", "Quantum", "Pioneer",
    "Maple", "Atlas", "Nimbus", "Granite", "Vertex", "Lumen", "Orbit", "Evergreen", "Keystone", "Copper",
]  # fmt: skip
WORDS_B = [
    "Analytics", "Labs", "Systems", "Health", "Logistics", "Robotics", "Foods", "Energy", "Capital", "Software",
    "Bio", "Networks", "Studios", "Security", "Materials", "Mobility", "Cloud", "Data", "Retail", "Partners",
]  # fmt: skip
CITIES = [
    ("San Francisco", "US"), ("New York", "US"), ("Austin", "US"), ("Chicago", "US"), ("Seattle", "US"),
    ("Boston", "US"), ("Denver", "US"), ("Atlanta", "US"), ("London", "GB"), ("Berlin", "DE"), ("Paris", "FR"),
    ("Toronto", "CA"), ("Amsterdam", "NL"), ("Stockholm", "SE"), ("Singapore", "SG"), ("Sydney", "AU"),
]  # fmt: skip
TLDS = [".com", ".com", ".com", ".io", ".ai", ".co"]


def make_sample(
    leads: int = 3000, companies: int = 300, seed: int = 64
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Deterministic, plausible sample rows: (companies, leads)."""
    rng = random.Random(seed)
    company_rows: list[tuple[Any, ...]] = []
    seen: set[str] = set()
    while len(company_rows) < companies:
        name = f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)}"
        if name in seen:
            name = f"{name} {rng.choice(['Group', 'Inc', 'Co', 'Holdings'])}"
            if name in seen:
                continue
        seen.add(name)
        domain = name.lower().replace(" ", "") + rng.choice(TLDS)
        city, country = rng.choice(CITIES)
        # a few accounts without a domain, so the example's `where domain is not null` has work to do
        company_rows.append((len(company_rows) + 1, name, None if rng.random() < 0.03 else domain, city, country))
    lead_rows: list[tuple[Any, ...]] = []
    for i in range(1, leads + 1):
        company = rng.choice(company_rows)
        city, country = (company[3], company[4]) if rng.random() < 0.8 else rng.choice(CITIES)
        lead_rows.append(
            (i, rng.choice(FIRST), rng.choice(LAST), company[1], company[2] or "", city, country, company[0])
        )
    return company_rows, lead_rows


def write_project(directory: Path, *, leads: int = 3000, companies: int = 300) -> Path:
    """Create the demo project in ``directory`` (replacing an earlier demo there); return the DuckDB path."""
    directory.mkdir(parents=True, exist_ok=True)
    models = directory / "models"
    if models.exists():
        shutil.rmtree(models)
    models.mkdir()
    for item in resources.files("sixtyfour_sync.examples").joinpath("models").iterdir():
        if item.name.endswith((".yml", ".yaml")):
            (models / item.name).write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "profiles.yml").write_text(
        "# The demo's warehouse: a DuckDB file beside this profile.\n"
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: demo.duckdb\n"
        "      schema: main\n",
        encoding="utf-8",
    )
    db = directory / "demo.duckdb"
    for leftover in (db, directory / "demo.duckdb.wal"):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(directory / ".sixtyfour", ignore_errors=True)
    company_rows, lead_rows = make_sample(leads, companies)
    companies_t = pa.Table.from_pylist(
        [dict(zip(("company_id", "name", "domain", "city", "country"), r, strict=True)) for r in company_rows]
    )
    leads_t = pa.Table.from_pylist(
        [
            dict(
                zip(
                    ("lead_id", "first_name", "last_name", "company", "domain", "city", "country", "company_id"),
                    r,
                    strict=True,
                )
            )
            for r in lead_rows
        ]
    )
    con = duckdb.connect(str(db))
    try:
        # Arrow in, not executemany: DuckDB's executemany manages a few hundred rows a second.
        con.register("companies_src", companies_t)
        con.register("leads_src", leads_t)
        con.execute(
            "CREATE TABLE companies (company_id BIGINT PRIMARY KEY, name VARCHAR, domain VARCHAR, city VARCHAR, "
            "country VARCHAR)"
        )
        con.execute("INSERT INTO companies SELECT * FROM companies_src")
        con.execute(
            "CREATE TABLE leads (lead_id BIGINT PRIMARY KEY, first_name VARCHAR, last_name VARCHAR, "
            "company VARCHAR, domain VARCHAR, city VARCHAR, country VARCHAR, company_id BIGINT)"
        )
        con.execute("INSERT INTO leads SELECT * FROM leads_src")
    finally:
        con.close()
    return db


def sample_rows(db: Path, limit: int = 5) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A few leads with what the demo found for them (for the before/after view)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        res = con.execute(
            "SELECT l.lead_id, l.first_name || ' ' || l.last_name AS name, l.company, e.email, e.title, "
            "e.email_confidence, e._sixtyfour_status AS status FROM leads l "
            "JOIN leads_enriched e USING (lead_id) ORDER BY l.lead_id LIMIT ?",
            [limit],
        )
        names = [d[0] for d in res.description or ()]
        return names, res.fetchall()
    finally:
        con.close()


def label_from_truth(directory: Path, db: Path, truth: Any, sample: Path, labels: Path) -> int:
    """Fill the label columns of an ``evaluate --sample`` file of ``enrich_leads`` with the emulator's ground truth
    (``truth``: :meth:`Emulator.truth`), as a team would by hand; return the rows labelled."""
    import csv

    from sixtyfour_sync.engine.project import Project

    project = Project.load(directory)
    (spec,) = [s.spec for s in project.syncs if s.spec.name == "enrich_leads"]
    columns = list(spec.source.columns or [])
    struct = {name: {"description": f.description, "type": f.type} for name, f in spec.struct.items()}
    with sample.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = [int(r["lead_id"]) for r in rows]
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = con.execute(
            f"SELECT lead_id, {', '.join(columns)} FROM leads WHERE lead_id IN (SELECT unnest(?))", [keys]
        ).fetchall()
    finally:
        con.close()
    inputs = {r[0]: dict(zip(columns, r[1:], strict=True)) for r in found}
    right = truth(struct, [inputs[k] for k in keys], columns=columns)
    for row, values in zip(rows, right, strict=True):
        for name, value in values.items():
            row[name] = value if not isinstance(value, (list, dict)) else json.dumps(value)
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["lead_id"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def run_demo(directory: Path, *, log_format: str = "text", job_seconds: float = 2.0) -> int:
    """Build the demo project, serve the emulator in-process, plan and run; return the exit code."""
    import os

    from rich.console import Console
    from rich.table import Table

    from sixtyfour_sync import commands as api
    from sixtyfour_sync.cli_options import command_line
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings
    from sixtyfour_sync.logging import event
    from sixtyfour_sync.report import write_report
    from sixtyfour_sync.ui import RichReporter, make_reporter, print_plans, print_run
    from sixtyfour_sync.ui.evaluation import print_evaluation

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    say = console.print if log_format == "text" else (lambda *a, **k: None)
    directory = directory.resolve()
    db = write_project(directory)
    say(f"[bold]sixtyfour-sync demo[/] in {directory}")
    say("  sample warehouse: demo.duckdb with 3,000 leads and 300 companies")
    key = "demo-key"
    emulator = Emulator(
        # answer_errors: a ground truth and some wrong answers per tier, so step 4 has something to measure
        EmulatorSettings(
            api_keys=frozenset({key}), job_seconds=job_seconds, failure_rate=0.05, seed=64, answer_errors=True
        )
    )
    os.environ.setdefault("SIXTYFOUR_SYNC_POLL_INTERVAL", "0.5")
    with emulator.serve(host="127.0.0.1", port=0) as server:
        say(f"  local Sixtyfour API emulator on {server.url} (no key, no network, no charge)\n")
        say("[bold]1. plan[/]: what would be sent and what it would cost (no API call)")
        print_plans(api.plan(directory), log_format)
        say("\n[bold]2. run[/]: submit, poll, download, parse, upsert")
        reporter = make_reporter(log_format)
        try:
            result = api.run(directory, api_key=key, api_url=server.url, reporter=reporter)
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        print_run(result, log_format)
        if log_format == "text":
            names, rows = sample_rows(db)
            table = Table(title="after: leads_enriched (joined to leads)")
            for n in names:
                table.add_column(n)
            for r in rows:
                table.add_row(*("" if v is None else str(v) for v in r))
            console.print(table)
        say("\n[bold]3. run again[/]: nothing changed, so nothing is sent or paid for")
        before = len(emulator.submissions)
        again = api.run(directory, api_key=key, api_url=server.url)
        sent = len(emulator.submissions) - before
        say(f"  {', '.join(f'{s.name}: {s.status}' for s in again.syncs)}; submissions to the API this time: {sent}")
        say(
            "\n[bold]4. evaluate[/]: how right are the answers? 200 sampled leads labelled with the emulator's ground "
            "truth (a team labels its sample by hand)"
        )
        sample = api.sample(directory, sync="enrich_leads", n=200, out=directory / "sample.csv")
        label_from_truth(directory, db, emulator.truth, sample.path, directory / "labels.csv")
        scores = api.evaluate(directory, sync="enrich_leads", labels=directory / "labels.csv", target_precision=0.9)
        print_evaluation(scores, log_format)
        page, _ = write_report(directory, out=directory / "report.html")
        say(f"\n[bold]5. report[/]: runs, costs, fill rates, confidences and answer quality on one page: {page}")
        if log_format == "json":
            event("demo.report", f"wrote {page}", path=str(page))
        exe = command_line(directory)
        say(
            f"\nNext: cd {shlex.quote(str(directory))} && {exe} status   "
            f"(or edit models/ and run `{exe} plan`, with the emulator: `{exe} emulator`)",
            markup=False,
            soft_wrap=True,
        )
    return result.exit_code
