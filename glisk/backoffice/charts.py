"""Server-side SVG charts for the dashboard: nothing leaves the machine to draw them."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe


def bar_chart(
    bars: Sequence[tuple[str, int, str]],
    *,
    width: int = 560,
    height: int = 180,
    title: str = "",
    label_every: int = 1,
) -> SafeString:
    """Vertical bars: (label, value, color). Values are drawn above each bar."""
    top, bottom, left = 22, 26, 8
    plot_h = height - top - bottom
    n = max(1, len(bars))
    slot = (width - 2 * left) / n
    bar_w = max(2.0, slot * 0.7)
    peak = max([value for _, value, _ in bars] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="glisk-chart">'
    ]
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#ccc"/>'
    )
    for i, (label, value, color) in enumerate(bars):
        h = 0 if peak == 0 else plot_h * value / peak
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        if value and (len(bars) <= 12 or value == peak):
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle" '
                f'fill="#333">{value}</text>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" '
                f'fill="#555">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every label is escaped above)
