"""Draw seconds and peak RSS against rows for the engine, the raw stages and the script, from pipeline JSON.

    python bench/plot_pipeline.py docs/benchmarks-pipeline.json [docs/benchmarks-pipeline-5m.json ...] \
        --out docs/benchmarks.png [--markdown]

Several files are drawn as one (say, 250,000 and 1,000,000 rows of every thing, and 5,000,000 of some);
``FILE.json:postgres`` takes only that backend's results (and ratios) from a file.

One column per backend; the top row is wall seconds, the bottom row peak RSS of the measured process. The
scheduled refresh's things (``--things noop one_pct diff``) are drawn dashed beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STYLES = {
    "engine": {"color": "#1f77b4", "marker": "o", "label": "sixtyfour-sync (engine)"},
    "raw": {"color": "#2ca02c", "marker": "s", "label": "raw stages"},
    "script": {"color": "#d62728", "marker": "^", "label": "hand-written pandas script"},
    "noop": {"color": "#9467bd", "marker": "D", "linestyle": "--", "label": "refresh, nothing changed (noop)"},
    "one_pct": {"color": "#ff7f0e", "marker": "v", "linestyle": "--", "label": "refresh, 1% changed (one_pct)"},
    "diff": {"color": "#7f7f7f", "marker": "x", "linestyle": ":", "label": "plain SQL diff of the same data"},
}


def plot(data: dict[str, Any], out: Path, title: str | None = None) -> None:
    """Write the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    backends = sorted({r["backend"] for r in results})
    fig, axes = plt.subplots(2, len(backends), figsize=(5.5 * len(backends), 7.5), squeeze=False)
    for col, backend in enumerate(backends):
        for thing, style in STYLES.items():
            points = sorted((r["rows"], r) for r in results if r["backend"] == backend and r["thing"] == thing)
            if not points:
                continue
            xs = [p[0] for p in points]
            axes[0][col].plot(xs, [p[1]["wall_s"] for p in points], **style)
            axes[1][col].plot(xs, [p[1]["peak_rss_mb"] for p in points], **style)
        axes[0][col].set_title(backend)
        axes[0][col].set_ylabel("wall seconds")
        axes[1][col].set_ylabel("peak RSS, MB")
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_xlabel("rows")
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
            ax.ticklabel_format(axis="x", style="plain")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1e6:g}M"))
    axes[0][0].legend(loc="upper left", fontsize=8)
    meta = data.get("meta", {})
    fig.suptitle(title or f"Pipeline, jobs instant (measured {meta.get('measured_at', '?')}, {meta.get('cpus')} CPUs)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def markdown(data: dict[str, Any]) -> str:
    """The results as the Markdown table of docs/benchmarks.md, then the ratios."""
    lines = [
        "| backend | rows | thing | wall s | CPU s | peak RSS MB | rows/s | rows/s excl. API | API s "
        "| emulator CPU s / peak MB | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {t: i for i, t in enumerate(("raw", "script", "engine", "refresh", "full", "noop", "one_pct", "diff"))}
    for r in sorted(data["results"], key=lambda r: (r["backend"], r["rows"], order.get(r["thing"], 9))):
        excl = f"{r['rows_per_s_excl_api']:,}" if r.get("rows_per_s_excl_api") else ""
        lines.append(
            f"| {r['backend']} | {r['rows']:,} | {r['thing']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} "
            f"| {r['peak_rss_mb']:.0f} | {r['rows_per_s']:,} | {excl} | {r['api_s']:.2f} "
            f"| {r.get('emulator_cpu_s', 0):.2f} / {r.get('emulator_peak_rss_mb', 0):.0f} "
            f"| {r['load_avg_start']:.1f}-{r['load_avg_end']:.1f} |"
        )
    pipeline_keys = ("engine_over_raw_wall", "engine_over_raw_cpu", "script_over_engine_wall")
    pipeline = [e for e in data.get("ratios", []) if any(k in e for k in pipeline_keys)]
    if pipeline:
        lines += [
            "",
            "| backend | rows | engine/raw wall | engine/raw CPU | script/engine wall |",
            "|---|---:|---:|---:|---:|",
        ]
    for e in pipeline:
        shown = " | ".join(f"{e[k]}x" if k in e else "" for k in pipeline_keys)
        lines.append(f"| {e['backend']} | {e['rows']:,} | {shown} |")
    refresh = [e for e in data.get("ratios", []) if "noop_over_diff_wall" in e or "one_pct_over_budget" in e]
    if refresh:
        lines += [
            "",
            "| backend | rows | noop/diff wall (<= 1.5x) | noop/diff CPU | one_pct budget s (diff + 2 x 1% of full) "
            "| one_pct/budget (<= 1x) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for e in refresh:
            lines.append(
                f"| {e['backend']} | {e['rows']:,} | {e.get('noop_over_diff_wall', '')}x "
                f"| {e.get('noop_over_diff_cpu', '')}x | {e.get('one_pct_budget_s', '')} "
                f"| {e.get('one_pct_over_budget', '')}x |"
            )
    return "\n".join(lines)


def _load(spec: str) -> dict[str, Any]:
    """A pipeline JSON file, or one backend's part of it (``FILE.json:BACKEND``)."""
    path, _, backend = spec.partition(".json:")
    data: dict[str, Any] = json.loads(Path(path + ".json" if backend else spec).read_text())
    if backend:
        data["results"] = [r for r in data["results"] if r["backend"] == backend]
        data["ratios"] = [e for e in data.get("ratios", []) if e["backend"] == backend]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="pipeline JSON files; FILE.json:BACKEND takes one backend's results")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.png"))
    parser.add_argument("--title", default=None)
    parser.add_argument("--markdown", action="store_true", help="also print the Markdown tables")
    args = parser.parse_args()
    files = [_load(spec) for spec in args.json]
    data = {
        **files[0],
        "results": [r for f in files for r in f["results"]],
        "ratios": [e for f in files for e in f.get("ratios", [])],
    }
    plot(data, args.out, args.title)
    print(f"wrote {args.out}")
    if args.markdown:
        print(markdown(data))


if __name__ == "__main__":
    main()
