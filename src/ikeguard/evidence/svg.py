"""Small inline SVG charts for report.html (bars, histogram), written by hand: the report must render
offline in a browser and in WeasyPrint without scripts, and a chart library (matplotlib, plotly) would bring
hundreds of megabytes or JavaScript for four charts. Every chart is deterministic text for the same data."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BAR = "#1f6fb4"  # the report tests look for these colours in the rendered pages
ALERT = "#c8322d"
GRID = "#d0d7de"
TEXT = "#24292f"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>' + "".join(body) + "</svg>")


def daily_bars(title: str, days: Sequence[str], series: Sequence[tuple[str, str, Sequence[int]]],
               width: int = 760, height: int = 220) -> str:
    """Grouped bars per day: ``series`` is ``(label, colour, values per day)``."""
    left, bottom, top = 40, 30, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([1, *(v for _l, _c, values in series for v in values)])
    body = [f'<text x="{left}" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>']
    for k in range(5):
        y = top + plot_h - plot_h * k / 4
        body.append(f'<line x1="{left}" y1="{_num(y)}" x2="{width - 10}" y2="{_num(y)}" stroke="{GRID}"/>')
        body.append(f'<text x="{left - 4}" y="{_num(y + 4)}" font-size="9" text-anchor="end" '
                    f'fill="{TEXT}">{_num(peak * k / 4)}</text>')
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.8 / max(1, len(series)))
    for i, day in enumerate(days):
        for j, (_label, colour, values) in enumerate(series):
            h = plot_h * values[i] / peak
            x = left + i * slot + slot * 0.1 + j * bar_w
            body.append(f'<rect x="{_num(x)}" y="{_num(top + plot_h - h)}" width="{_num(bar_w)}" '
                        f'height="{_num(h)}" fill="{colour}"/>')
        if len(days) <= 12 or i % max(1, len(days) // 8) == 0:
            body.append(f'<text x="{_num(left + i * slot)}" y="{height - 12}" font-size="9" '
                        f'fill="{TEXT}">{escape(day[5:])}</text>')
    x = width - 10
    for label, colour, _values in reversed(series):
        x -= 24 + 6 * len(label)
        body.append(f'<rect x="{x}" y="5" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{x + 13}" y="14" font-size="10" fill="{TEXT}">{escape(label)}</text>')
    return _svg(width, height, title, body)


def horizontal_bars(title: str, rows: Sequence[tuple[str, float, str]], unit: str = "",
                    width: int = 760) -> str:
    """One bar per ``(label, value, colour)``, labels on the left."""
    row_h, top, label_w = 20, 24, 330
    height = top + row_h * max(1, len(rows)) + 10
    peak = max([1.0, *(abs(v) for _l, v, _c in rows)])
    plot_w = width - label_w - 70
    body = [f'<text x="0" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>']
    for i, (label, value, colour) in enumerate(rows):
        y = top + i * row_h
        w = max(1.0, plot_w * abs(value) / peak)
        body.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="10" text-anchor="end" '
                    f'fill="{TEXT}">{escape(label[:60])}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 3}" width="{_num(w)}" height="{row_h - 6}" '
                    f'fill="{colour}"/>')
        body.append(f'<text x="{_num(label_w + w + 4)}" y="{y + 14}" font-size="10" '
                    f'fill="{TEXT}">{_num(value)}{escape(unit)}</text>')
    return _svg(width, height, title, body)


def histogram(title: str, values: Sequence[float], bins: int = 12, unit: str = "",
              width: int = 760, height: int = 200) -> str:
    """A histogram of ``values`` in ``bins`` equal bins."""
    if not values:
        return _svg(width, 40, title, [f'<text x="0" y="20" font-size="12" fill="{TEXT}">{escape(title)}: '
                                       "no values in the period</text>"])
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / step))] += 1
    labels = [f"{_num(lo + k * step)}-{_num(lo + (k + 1) * step)}{unit}" for k in range(bins)]
    left, bottom, top = 40, 30, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts)
    body = [f'<text x="{left}" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>']
    slot = plot_w / bins
    for k, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + k * slot
        body.append(f'<rect x="{_num(x + 1)}" y="{_num(top + plot_h - h)}" width="{_num(slot - 2)}" '
                    f'height="{_num(h)}" fill="{BAR}"/>')
        body.append(f'<text x="{_num(x + slot / 2)}" y="{_num(top + plot_h - h - 3)}" font-size="9" '
                    f'text-anchor="middle" fill="{TEXT}">{count}</text>')
        if k % 2 == 0:
            body.append(f'<text x="{_num(x)}" y="{height - 12}" font-size="8" fill="{TEXT}">'
                        f'{escape(labels[k])}</text>')
    return _svg(width, height, title, body)
