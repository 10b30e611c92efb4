"""Inline SVG charts for the run report: pure functions, data in, markup out.

No script and no external resource: every chart is a plain ``<svg>`` whose colours come from the page's CSS
classes, with a ``<title>`` on each bar for a tooltip. Each bar is a ``rect.bar`` carrying its value in
``data-value``, so a test (or a curious reader) can check the numbers behind the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["BarGroup", "Segment", "bar_chart", "hbar_chart", "histogram", "nice_ticks"]


def _e(v: object) -> str:
    return escape(str(v), quote=True)


def _n(v: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (steps of 1, 2 or 5 times a power of ten)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


@dataclass(frozen=True)
class Segment:
    """One piece of a stacked bar."""

    series: str  # a CSS class: the colour and the legend entry
    value: float
    title: str


@dataclass(frozen=True)
class BarGroup:
    """One x position (a run): one or more bars side by side, each a stack of segments."""

    key: str
    label: str
    bars: tuple[tuple[Segment, ...], ...]
    title: str = ""


@dataclass(frozen=True)
class _Frame:
    width: float = 960
    height: float = 260
    left: float = 64
    right: float = 12
    top: float = 30
    bottom: float = 40

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


@dataclass
class _Svg:
    cls: str
    title: str
    frame: _Frame = field(default_factory=_Frame)
    parts: list[str] = field(default_factory=list)

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def text(self, x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> None:
        attrs = f' class="{cls}"' if cls else ""
        self.add(f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{attrs}>{_e(text)}</text>')

    def done(self) -> str:
        f = self.frame
        head = (
            f'<svg class="chart {self.cls}" viewBox="0 0 {_n(f.width)} {_n(f.height)}" '
            # never drawn wider than its own width: a short chart in a wide column would scale its text up
            f'style="max-width: {_n(f.width)}px" '
            f'role="img" xmlns="http://www.w3.org/2000/svg"><title>{_e(self.title)}</title>'
        )
        return head + "".join(self.parts) + "</svg>"


#: The width of one character of a horizontal bar chart's text at the page's 14px (an average, generous for
#: digits and lower case), and the shortest track those charts draw.
_TEXT_EM = 8.0
_MIN_PLOT = 180.0


def _legend(svg: _Svg, series: Sequence[tuple[str, str]]) -> None:
    x = svg.frame.left
    for cls, name in series:
        svg.add(f'<rect class="swatch {cls}" x="{_n(x)}" y="8" width="12" height="12" rx="2"/>')
        svg.text(x + 17, 18.5, name, "legend")
        x += 30 + 7.2 * len(name)


def _y_axis(svg: _Svg, ticks: Sequence[float], fmt: Callable[[float], str]) -> None:
    f = svg.frame
    top = ticks[-1] or 1
    for t in ticks:
        y = f.top + f.plot_h * (1 - t / top)
        svg.add(f'<line class="grid" x1="{_n(f.left)}" x2="{_n(f.width - f.right)}" y1="{_n(y)}" y2="{_n(y)}"/>')
        svg.text(f.left - 6, y + 4, fmt(t), "tick", "end")


def bar_chart(
    cls: str,
    title: str,
    groups: Sequence[BarGroup],
    series: Sequence[tuple[str, str]],
    fmt: Callable[[float], str],
    *,
    width: float = 1180,
    max_labels: int = 14,
    max_bar: float = 40,
) -> str:
    """Bars over time: one group per x position, each bar a stack of segments; ``series`` is the legend.

    Every segment is drawn (a zero is a zero-height bar), so a group always holds the same number of bars.
    """
    svg = _Svg(cls, title, _Frame(width=width))
    f = svg.frame
    _legend(svg, series)
    tallest = max((sum(s.value for s in bar) for g in groups for bar in g.bars), default=0.0)
    ticks = nice_ticks(tallest)
    _y_axis(svg, ticks, fmt)
    if not groups:
        svg.text(f.left + f.plot_w / 2, f.top + f.plot_h / 2, "no runs yet", "empty", "middle")
        return svg.done()
    top = ticks[-1] or 1
    slot = f.plot_w / len(groups)
    per = max(len(g.bars) for g in groups)
    gap = min(slot * 0.2, 10)
    bar_w = min(max((slot - gap) / per, 0.5), max_bar)
    every = max(1, math.ceil(len(groups) / max_labels))
    for i, g in enumerate(groups):
        x0 = f.left + i * slot + (slot - bar_w * per) / 2
        svg.add(f'<g class="group" data-key="{_e(g.key)}">' + (f"<title>{_e(g.title)}</title>" if g.title else ""))
        for b, bar in enumerate(g.bars):
            y = f.top + f.plot_h
            for seg in bar:
                h = f.plot_h * max(seg.value, 0.0) / top
                y -= h
                svg.add(
                    f'<rect class="bar {seg.series}" data-value="{_e(repr(float(seg.value)))}" '
                    f'x="{_n(x0 + b * bar_w)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(h)}">'
                    f"<title>{_e(seg.title)}</title></rect>"
                )
        svg.add("</g>")
        if i % every == 0:
            svg.text(x0 + bar_w * per / 2, f.top + f.plot_h + 16, g.label, "tick", "middle")
    base = f.top + f.plot_h
    svg.add(f'<line class="axis" x1="{_n(f.left)}" x2="{_n(f.width - f.right)}" y1="{_n(base)}" y2="{_n(base)}"/>')
    return svg.done()


def hbar_chart(
    cls: str,
    title: str,
    items: Sequence[tuple[str, float, str]],
    *,
    label_width: float = 150,
    width: float = 570,
) -> str:
    """Horizontal bars of shares (0..1): one row per ``(label, share, caption)``; the caption is at the end.

    Its text is the page's size (the chart is never drawn wider than ``width``): the label and caption columns
    grow to fit the longest label and caption, and the chart grows with them when the bars would be too short.
    """
    row_h = 26.0
    height = 10 + row_h * max(len(items), 1)
    left = max(label_width, 16 + _TEXT_EM * max((len(label) for label, _, _ in items), default=0))
    right = max(170.0, 16 + _TEXT_EM * max((len(caption) for _, _, caption in items), default=0))
    width = max(width, left + right + _MIN_PLOT)
    svg = _Svg(f"hbar {cls}", title, _Frame(width=width, height=height, left=left, right=right, top=6, bottom=4))
    f = svg.frame
    if not items:
        svg.text(f.left, 24, "nothing to show", "empty")
        return svg.done()
    for i, (label, share, caption) in enumerate(items):
        y = f.top + i * row_h
        share = min(max(share, 0.0), 1.0)
        svg.text(f.left - 8, y + 17, label, "label", "end")
        svg.add(f'<rect class="track" x="{_n(f.left)}" y="{_n(y + 4)}" width="{_n(f.plot_w)}" height="18" rx="3"/>')
        svg.add(
            f'<rect class="bar share" data-value="{_e(repr(float(share)))}" x="{_n(f.left)}" y="{_n(y + 4)}" '
            f'width="{_n(f.plot_w * share)}" height="18" rx="3"><title>{_e(f"{label}: {caption}")}</title></rect>'
        )
        svg.text(f.left + f.plot_w + 8, y + 17, caption, "value")
    return svg.done()


def histogram(cls: str, title: str, counts: Sequence[int], labels: Sequence[str]) -> str:
    """A small vertical histogram: one ``rect.bar`` per bucket, heights relative to the fullest bucket."""
    frame = _Frame(width=300, height=130, left=8, right=8, top=8, bottom=22)
    svg = _Svg(cls, title, frame)
    top = max(counts, default=0) or 1
    slot = frame.plot_w / max(len(counts), 1)
    for i, (n, label) in enumerate(zip(counts, labels, strict=True)):
        h = frame.plot_h * n / top
        x = frame.left + i * slot + 1
        y = frame.top + frame.plot_h - h
        svg.add(
            f'<rect class="bar conf" data-value="{int(n)}" x="{_n(x)}" y="{_n(y)}" width="{_n(slot - 2)}" '
            f'height="{_n(h)}"><title>{_e(f"confidence {label}: {n:,} row(s)")}</title></rect>'
        )
        if i % 2 == 0:
            svg.text(x + (slot - 2) / 2, frame.height - 6, label.split("-")[0], "tick", "middle")
    base = frame.top + frame.plot_h
    svg.add(
        f'<line class="axis" x1="{_n(frame.left)}" x2="{_n(frame.width - frame.right)}" '
        f'y1="{_n(base)}" y2="{_n(base)}"/>'
    )
    return svg.done()
