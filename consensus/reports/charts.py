"""Inline SVG charts for the HTML report: no script library, no external asset.

Every function returns :class:`markupsafe.Markup` with every label escaped (judge names,
principles and generators come from user files: they are data, never markup).

Example:
    >>> svg = bars([("rules", 0.9, "0.900"), ("gpt <4>", None, "—")])
    >>> svg.startswith("<svg") and "gpt &lt;4&gt;" in svg
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d",
           "#4d7c0f", "#7c3aed", "#b45309")
ACTION_COLOURS = {"accept": "#2e7d32", "block": "#c62828", "flag": "#f9a825",
                  "revise": "#fb8c00", "regenerate": "#fdd835", "escalate": "#6d28d9"}
FONT = 'font-family="system-ui, sans-serif"'


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def blue_red(x: float | None) -> str:
    """Fill for a value in [-1, 1]: blue above 0, red below, grey when undefined."""
    if x is None:
        return "#e5e7eb"
    x = max(-1.0, min(1.0, x))
    if x >= 0:
        return f"rgba(37,99,235,{0.10 + 0.85 * x:.2f})"
    return f"rgba(220,38,38,{0.10 + 0.85 * -x:.2f})"


def green_red(x: float | None) -> str:
    """Fill for a share in [0, 1]: red (0) through pale (0.5) to green (1)."""
    if x is None:
        return "#e5e7eb"
    x = max(0.0, min(1.0, x))
    if x >= 0.5:
        return f"rgba(22,163,74,{0.10 + 1.6 * (x - 0.5):.2f})"
    return f"rgba(220,38,38,{0.10 + 1.6 * (0.5 - x):.2f})"


def heatmap(rows: Sequence[str], cols: Sequence[str],
            value: Callable[[str, str], float | None], *, colour: Callable[[float | None], str],
            text: Callable[[str, str], str], title: Callable[[str, str], str],
            label: str, mark: Callable[[str, str], bool] | None = None) -> Markup:
    """A matrix of coloured cells with row and column labels (columns written at 45°)."""
    cell, left = 34, min(220, 12 + 7 * max((len(r) for r in rows), default=4))
    top = min(160, 16 + 6 * max((len(c) for c in cols), default=4))
    width, height = left + cell * len(cols) + 10, top + cell * len(rows) + 4
    out = [(f'<svg class="chart" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(label)}" {FONT} font-size="11">')]
    for j, c in enumerate(cols):
        x = left + cell * j + cell / 2
        out.append(f'<text transform="translate({x:.0f},{top - 6}) rotate(-45)">'
                   f'{escape(c[:40])}</text>')
    for i, r in enumerate(rows):
        y = top + cell * i
        out.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" text-anchor="end">'
                   f'{escape(r[:40])}</text>')
        for j, c in enumerate(cols):
            x = left + cell * j
            v = value(r, c)
            stroke = ' stroke="#111827" stroke-width="2"' if mark and mark(r, c) else ""
            out.append(f'<g><title>{escape(title(r, c))}</title><rect x="{x}" y="{y}" '
                       f'width="{cell - 2}" height="{cell - 2}" rx="3" fill="{colour(v)}"'
                       f'{stroke}></rect><text x="{x + (cell - 2) / 2:.0f}" '
                       f'y="{y + cell / 2 + 3:.0f}" text-anchor="middle" font-size="10">'
                       f'{escape(text(r, c))}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def bars(rows: Sequence[tuple[str, float | None, str]], *, colour: str = "#3b82f6",
         label: str = "bars") -> Markup:
    """Horizontal bars of shares in [0, 1]: (label, value, text shown beside the bar)."""
    left, width, row = 180, 300, 20
    out = [(f'<svg class="chart" width="{left + width + 80}" height="{row * len(rows) + 6}" '
           f'role="img" aria-label="{escape(label)}" {FONT} font-size="12">')]
    for i, (name, v, txt) in enumerate(rows):
        y = i * row + 3
        w = 0.0 if v is None else max(0.0, min(1.0, v)) * width
        out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(name[:28])}'
                   f'</text><rect x="{left}" y="{y}" width="{width}" height="15" rx="3" '
                   f'fill="#eef2ff"></rect><rect x="{left}" y="{y}" width="{w:.1f}" height="15" '
                   f'rx="3" fill="{colour}"></rect><text x="{left + width + 6}" y="{y + 12}">'
                   f'{escape(txt)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def stacked(rows: Sequence[tuple[str, Mapping[str, int]]], *, label: str) -> Markup:
    """Horizontal stacked bars of counts per action (one bar per row, a legend on top)."""
    left, width, row = 200, 420, 22
    acts = sorted({a for _, counts in rows for a in counts})
    most = max((sum(c.values()) for _, c in rows), default=1) or 1
    out = [(f'<svg class="chart" width="{left + width + 60}" height="{row * len(rows) + 30}" '
           f'role="img" aria-label="{escape(label)}" {FONT} font-size="12">')]
    x = left
    for a in acts:
        out.append(f'<rect x="{x}" y="2" width="12" height="12" '
                   f'fill="{ACTION_COLOURS.get(a, "#64748b")}"></rect>'
                   f'<text x="{x + 16}" y="12">{escape(a)}</text>')
        x += 24 + 7 * len(a)
    for i, (name, counts) in enumerate(rows):
        y = 24 + i * row
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(name[:30])}'
                   '</text>')
        x0 = float(left)
        for a in acts:
            n = counts.get(a, 0)
            if not n:
                continue
            w = width * n / most
            out.append(f'<g><title>{escape(f"{name}: {a} {n}")}</title><rect x="{x0:.1f}" '
                       f'y="{y}" width="{w:.1f}" height="17" '
                       f'fill="{ACTION_COLOURS.get(a, "#64748b")}"></rect></g>')
            x0 += w
        out.append(f'<text x="{x0 + 5:.1f}" y="{y + 13}">{sum(counts.values())}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def lines(series: Mapping[str, Sequence[tuple[float, float]]], *, label: str,
          x_range: tuple[float, float] | None = None, diagonal: bool = False,
          x_title: str = "", y_title: str = "", x_ticks: Sequence[tuple[float, str]] = (),
          sizes: Mapping[str, Sequence[int]] | None = None) -> Markup:
    """Lines with markers on a [0, 1] y axis; ``diagonal`` draws y = x (perfect calibration);
    ``sizes`` (per series, per point) scale the markers (bin counts)."""
    w, h, left, top, bottom = 460, 260, 44, 10, 36
    xs = [x for pts in series.values() for x, _ in pts]
    lo, hi = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5

    def px(x: float) -> float:
        return left + (x - lo) / (hi - lo) * w

    def py(y: float) -> float:
        return top + (1.0 - y) * h

    legend_h = 16 * ((len(series) + 2) // 3)
    out = [(f'<svg class="chart" width="{left + w + 20}" height="{top + h + bottom + legend_h}" '
           f'role="img" aria-label="{escape(label)}" {FONT} font-size="11">'),
           (f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#f8fafc" '
           'stroke="#cbd5e1"></rect>')]
    for k in range(6):
        y = k / 5
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   f'stroke="#e2e8f0"></line><text x="{left - 4}" y="{py(y) + 4:.1f}" '
                   f'text-anchor="end">{y:.1f}</text>')
    ticks = x_ticks or [(lo + (hi - lo) * k / 5, f"{lo + (hi - lo) * k / 5:.1f}")
                        for k in range(6)]
    for x, t in ticks:
        out.append(f'<text x="{px(x):.1f}" y="{top + h + 14}" text-anchor="middle">'
                   f'{escape(t)}</text>')
    if diagonal:
        out.append(f'<line x1="{px(lo):.1f}" y1="{py(lo):.1f}" x2="{px(hi):.1f}" '
                   f'y2="{py(hi):.1f}" stroke="#94a3b8" stroke-dasharray="4 3"></line>')
    out.append(f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle" '
               f'fill="#475569">{escape(x_title)}</text><text transform="translate(11,'
               f'{top + h / 2}) rotate(-90)" text-anchor="middle" fill="#475569">'
               f'{escape(y_title)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2">'
                   '</polyline>')
        counts = list((sizes or {}).get(name, ()))
        most = max(counts, default=1) or 1
        for k, (x, y) in enumerate(pts):
            r = 2.5 + (4.0 * (counts[k] / most) ** 0.5 if k < len(counts) else 0.0)
            tip = f"{name}: {_fmt(x)} → {_fmt(y)}" + (f" (n={counts[k]})" if k < len(counts)
                                                      else "")
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r:.1f}" fill="{c}">'
                       f'<title>{escape(tip)}</title></circle>')
        lx, ly = left + (i % 3) * 160, top + h + bottom + 12 + 16 * (i // 3)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{c}"></rect>'
                   f'<text x="{lx + 14}" y="{ly}">{escape(name[:24])}</text>')
    out.append("</svg>")
    return Markup("".join(out))
