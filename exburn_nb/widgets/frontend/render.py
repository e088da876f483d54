"""Which figure the widgets draw: the live plotly ``FigureWidget``, or a static fallback.

The live figure needs the front end to run plotly's widget JavaScript (anywidget). Where it
cannot (VS Code or Colab without that JavaScript), the dashboard and ``live_plot`` draw a
static plotly figure instead, redrawn at most
:data:`STATIC_UPDATES_PER_S` times a second. The kernel cannot ask the front end what it
renders, so the choice is made from environment hints (``VSCODE_PID``,
``COLAB_NOTEBOOK_ID``/``COLAB_RELEASE_TAG``) or by :func:`set_renderer`. Exports need
neither: a live figure leaves an export-only static copy under it
(:func:`~exburn_nb.widgets.plot.export_snapshot`).

Example:
    >>> xb.widgets.set_renderer("static")  # e.g. before a notebook is exported to HTML  # doctest: +SKIP
"""

from __future__ import annotations

import os

RENDERERS = ("widget", "static", "auto")
STATIC_UPDATES_PER_S = 1
STATIC_HINTS = ("VSCODE_PID", "COLAB_NOTEBOOK_ID", "COLAB_RELEASE_TAG")
_choice = "auto"


def set_renderer(name: str) -> None:
    """Draw later figures as ``"widget"`` (live FigureWidget), ``"static"`` (a plotly figure
    redrawn about once a second, shown by any front end and kept in exports) or
    ``"auto"`` (static in VS Code and Colab, else the widget).

    Example:
        >>> set_renderer("widget")
    """
    global _choice
    if name not in RENDERERS:
        raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}; got {name!r}")
    _choice = name


def renderer() -> str:
    """The renderer new figures use: ``"widget"`` or ``"static"``."""
    if _choice != "auto":
        return _choice
    return "static" if any(os.environ.get(k) for k in STATIC_HINTS) else "widget"
