"""The guide's boxed model summary, as text and as HTML.

Example:
    >>> rows = [SummaryRow("hidden1", "Dense", "(None, 256)", 200_960, False)]
    >>> print(render_text(rows))
    ╔═════════════════════════════════════════════╗
    ║ ExBurn Model Summary                        ║
    ╠═════════════════════════════════════════════╣
    ║ Layer    Type   Output Shape   Params       ║
    ║ hidden1  Dense  (None, 256)   200,960       ║
    ╠═════════════════════════════════════════════╣
    ║ Total params: 200,960                       ║
    ║ Trainable params: 200,960                   ║
    ╚═════════════════════════════════════════════╝
"""

from __future__ import annotations

import html
from typing import NamedTuple


class SummaryRow(NamedTuple):
    """One layer's line in the summary."""

    name: str
    type: str
    shape: str
    params: int
    frozen: bool


def format_shape(shape: tuple | None) -> str:
    """``(None, 256)`` for a known shape, ``?`` for an unknown one."""
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _totals(rows: list[SummaryRow]) -> tuple[int, int]:
    total = sum(r.params for r in rows)
    return total, total - sum(r.params for r in rows if r.frozen)


def render_text(rows: list[SummaryRow], title: str = "ExBurn Model Summary") -> str:
    """The boxed table: layer, type, output shape, params (frozen layers marked)."""
    head = ("Layer", "Type", "Output Shape", "Params", "")
    cells = [head] + [(r.name, r.type, r.shape, f"{r.params:,}", "frozen" if r.frozen else "")
                      for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]

    def line(c: tuple[str, ...]) -> str:
        left = "  ".join(v.ljust(w) for v, w in zip(c[:3], widths, strict=False))
        return f"{left}  {c[3].rjust(widths[3])}  {c[4]}".rstrip()

    total, trainable = _totals(rows)
    foot = [f"Total params: {total:,}", f"Trainable params: {trainable:,}"]
    if total != trainable:
        foot.append(f"Non-trainable params: {total - trainable:,}")
    body = [line(c) for c in cells]
    inner = max(len(s) for s in [title, *body, *foot]) + 6
    bar = "═" * (inner + 2)

    def box(s: str) -> str:
        return f"║ {s.ljust(inner)} ║"

    return "\n".join([f"╔{bar}╗", box(title), f"╠{bar}╣", *map(box, body), f"╠{bar}╣",
                      *map(box, foot), f"╚{bar}╝"])


FROZEN_STYLE = ' style="opacity:0.6"'


def render_html(rows: list[SummaryRow], title: str = "ExBurn Model Summary") -> str:
    """The same table as HTML, for Jupyter's rich display."""
    total, trainable = _totals(rows)
    esc = html.escape
    trs = "".join(
        f"<tr{FROZEN_STYLE if r.frozen else ''}><td>{esc(r.name)}</td>"
        f"<td>{esc(r.type)}</td><td>{esc(r.shape)}</td>"
        f"<td style='text-align:right'>{r.params:,}</td>"
        f"<td>{'❄ frozen' if r.frozen else ''}</td></tr>" for r in rows)
    return (f"<div class='xb-summary'><b>{esc(title)}</b><table>"
            "<thead><tr><th>Layer</th><th>Type</th><th>Output Shape</th><th>Params</th>"
            f"<th></th></tr></thead><tbody>{trs}</tbody></table>"
            f"<div>Total params: {total:,}<br>Trainable params: {trainable:,}</div></div>")
