"""Inline SVG charts for the DPO report: no script, no external asset, every label escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_BOX_W = 190
_BOX_H = 42
_GAP = 14


def _box(x: int, y: int, label: str, count: int, fill: str) -> str:
    return (
        f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="{fill}" stroke="#333"/>'
        f'<text x="{x + 10}" y="{y + 17}" font-size="12">{escape(label)}</text>'
        f'<text x="{x + 10}" y="{y + 34}" font-size="14" font-weight="bold">{count:,}</text>'
    )


def _link(x1: int, y1: int, x2: int, y2: int, count: int, total: int) -> str:
    width = 1 + 14 * (count / total if total else 0)
    mid = (x1 + x2) // 2
    return (
        f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
        f'stroke="#7a9cc6" stroke-opacity="0.6" stroke-width="{width:.1f}"/>'
    )


def flow_chart(received: int, matched_by_register: dict[str, int], possible: int, unmatched: int,
               deleted: int, retained: int) -> str:
    """Received -> matched (by register) / possible / unmatched -> deleted / retained.

    Args:
        received: records in the delivery.
        matched_by_register: matched records by the register they matched.
        possible: records held for clerical review.
        unmatched: records matching no register.
        deleted: records whose health data was deleted.
        retained: records kept, encrypted.
    """
    middle = [(f"Matched: {name}", n, "#d8ecd8", "deleted") for name, n in sorted(matched_by_register.items())]
    middle += [("Possible match (review)", possible, "#fff2cc", "retained"),
               ("Unmatched", unmatched, "#f8d7d7", "retained")]
    height = max(3, len(middle)) * (_BOX_H + _GAP) + _GAP
    x0, x1, x2 = 10, 290, 570
    y_in = height // 2 - _BOX_H // 2
    y_del = height // 3 - _BOX_H // 2
    y_ret = 2 * height // 3 - _BOX_H // 2
    parts = [_box(x0, y_in, "Received from NHS", received, "#e8eef8")]
    for i, (label, count, fill, end) in enumerate(middle):
        y = _GAP + i * (_BOX_H + _GAP)
        parts.append(_link(x0 + _BOX_W, y_in + _BOX_H // 2, x1, y + _BOX_H // 2, count, received))
        target = y_del if end == "deleted" else y_ret
        parts.append(_link(x1 + _BOX_W, y + _BOX_H // 2, x2, target + _BOX_H // 2, count, received))
        parts.append(_box(x1, y, label, count, fill))
    parts.append(_box(x2, y_del, "Deleted (key destroyed)", deleted, "#d8ecd8"))
    parts.append(_box(x2, y_ret, "Retained, encrypted", retained, "#f8d7d7"))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{x2 + _BOX_W + 10}" height="{height}" '
        f'viewBox="0 0 {x2 + _BOX_W + 10} {height}" font-family="sans-serif">'
        "<title>Flow of records from receipt to deletion or retention</title>" + "".join(parts) + "</svg>"
    )


def histogram(counts: Sequence[int], lower_edges: Sequence[float], thresholds: Sequence[float] = ()) -> str:
    """Bars of the number of records per match-probability bin.

    Args:
        counts: records per bin.
        lower_edges: each bin's lower edge (same length as ``counts``).
        thresholds: probabilities to mark with a dashed line (possible and match thresholds).
    """
    if not counts:
        return "<p>No score distribution was recorded.</p>"
    width, height, left, bottom = 640, 220, 50, 40
    plot_w, plot_h = width - left - 10, height - bottom - 10
    top = max(max(counts), 1)
    bar_w = plot_w / len(counts)
    parts = []
    for i, count in enumerate(counts):
        h = plot_h * count / top
        x = left + i * bar_w
        parts.append(f'<rect x="{x + 1:.1f}" y="{10 + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                     f'height="{h:.1f}" fill="#7a9cc6"><title>{count:,}</title></rect>')
        label = f"{lower_edges[i]:.2f}" if i < len(lower_edges) else ""
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" font-size="10" '
                     f'text-anchor="middle">{escape(label)}</text>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{max(10 + plot_h - h - 3, 20):.1f}" font-size="9" '
                     f'text-anchor="middle">{count:,}</text>')
    edges = list(lower_edges)
    for t in thresholds:
        # Bins are uneven near 1.0, so place the line on the bin that starts at the threshold.
        index = next((i for i, e in enumerate(edges) if e >= t - 1e-9), len(edges))
        x = left + index * bar_w
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{10 + plot_h}" stroke="#c00" '
                     f'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 "probability of the best match (lower edge of each bin)</text>")
    parts.append(f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#333"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
        "<title>Number of records by match probability</title>" + "".join(parts) + "</svg>"
    )
