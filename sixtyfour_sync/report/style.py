"""The run report's stylesheet (inline in the page: no font or file is fetched)."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root {
  --ink: #1d2330; --muted: #5d6677; --line: #e3e6ec; --bg: #f6f7f9; --card: #ffffff;
  --good: #1f8a4c; --bad: #c4362f; --warn: #b7791f; --info: #2b6cb0;
  --enriched: #2f9e64; --failed: #d9534f; --missing: #e0a030;
  --estimated: #b8c2d3; --charged: #2b6cb0; --later: #7fb0e6; --share: #3b7dd8; --conf: #6c5ce7;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header.top { padding-top: 24px; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 19px; margin: 0 0 4px; }
h3 { font-size: 15px; margin: 22px 0 8px; }
code, .mono, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.id { color: var(--muted); font-size: 11.5px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0 0 16px; color: var(--muted); }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  min-width: 150px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 24px; font-weight: 650; }
.tile.small { min-width: 120px; padding: 8px 12px; }
.tile.small .value { font-size: 18px; }
.tile .note { color: var(--muted); font-size: 12px; }
.tile.bad { border-color: var(--bad); }
.tile.bad .value { color: var(--bad); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
  margin: 18px 0; }
p.meta { color: var(--muted); margin: 0 0 8px; }
p.empty { color: var(--muted); }
p.empty.ok { color: var(--good); }
p.note { color: var(--muted); font-size: 13px; }
p.problem { color: var(--bad); }
.charts { display: grid; grid-template-columns: 1fr; gap: 14px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.hists { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 14px; }
.hist figcaption { font-weight: 400; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }  /* max-width: its drawn width (inline) */
svg.chart text { font-size: 12px; fill: var(--muted); }
svg.chart text.label { fill: var(--ink); font-size: 13px; }
svg.chart text.value { fill: var(--ink); }
svg.chart text.legend { fill: var(--ink); }
svg.chart.hbar text { font-size: 1em; }  /* bar charts drawn at their own width (never wider): the page's size */
svg.chart .grid { stroke: var(--line); }
svg.chart .axis { stroke: #9aa3b2; }
svg.chart .track { fill: #eef1f5; }
.enriched { fill: var(--enriched); } .failed { fill: var(--failed); } .missing { fill: var(--missing); }
.estimated { fill: var(--estimated); } .charged { fill: var(--charged); } .later { fill: var(--later); }
.share { fill: var(--share); } .conf { fill: var(--conf); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
table.runs th { white-space: normal; }  /* "Charged later" on two lines leaves the Error column room */
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.when { white-space: nowrap; }
td.error { color: var(--bad); }
/* an error wraps between words in a column wide enough to read, four lines at most on screen (its tooltip and
   the printed page have all of it) */
td.error .msg { min-width: 20em; max-width: 34em; word-break: normal; overflow-wrap: break-word;
  display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 4; line-clamp: 4; overflow: hidden; }
td.advice { min-width: 18em; max-width: 28em; }
table.tiers { width: auto; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  background: #edf0f4; color: var(--muted); }
.badge.good { background: #e3f4ea; color: var(--good); } .badge.bad { background: #fbe7e6; color: var(--bad); }
.badge.warn { background: #fbf1df; color: var(--warn); } .badge.info { background: #e4eefa; color: var(--info); }
footer { color: var(--muted); font-size: 12.5px; padding-bottom: 32px; }
dl.glossary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.glossary dt { font-weight: 600; }
dl.glossary dd { margin: 0; }
@media print { body { background: #fff; } section { break-inside: avoid; }
  td.error .msg { display: block; -webkit-line-clamp: none; line-clamp: none; overflow: visible; } }
"""
