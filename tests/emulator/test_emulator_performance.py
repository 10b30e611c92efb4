"""A 100,000-row JSONL upload is accepted and turned into its output quickly (numbers in docs/emulator.md)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import pyarrow.csv as pacsv
import pytest

from .helpers import Live

ROWS = 100_000


@pytest.mark.slow
def test_100k_row_jsonl_upload_and_output(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=3600)
    lines = "".join(
        json.dumps(
            {
                "lead_id": i,
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "company": f"Company {i % 5000}",
                "domain": f"co{i % 5000}.example",
            }
        )
        + "\n"
        for i in range(ROWS)
    ).encode()
    config = {
        "struct": {
            "email": "Email",
            "linkedin": "LinkedIn URL",
            "title": "Job title",
            "employee_count": {"description": "Employees", "type": "int"},
            "summary": "Short bio",
        },
        "field_confidence": True,
        "columns": ["first_name", "last_name", "company", "domain"],
    }
    started = time.perf_counter()
    submitted = live.submit(config, filename="rows.jsonl", content=lines)
    accepted = time.perf_counter()
    assert submitted.status_code == 200 and submitted.json()["row_count"] == ROWS
    live.emu.complete(submitted.json()["task_id"])
    produced = time.perf_counter()
    final = live.final(submitted.json()["task_id"])
    data = live.client.get(final["download_url"]).content
    downloaded = time.perf_counter()
    # Multi-line quoted values: pyarrow needs newlines_in_values=True once the file spans blocks.
    table = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert table.num_rows == ROWS
    print(
        f"\n100k-row JSONL ({len(lines) / 1e6:.1f} MB): accept {accepted - started:.2f} s, "
        f"produce {produced - accepted:.2f} s, download {downloaded - produced:.2f} s "
        f"({len(data) / 1e6:.1f} MB)"
    )
    # Generous bounds for a loaded 2-core CI machine; typical numbers are several times lower.
    assert accepted - started < 15
    assert produced - accepted < 15
