"""Let controls act while a cell blocks: widget messages on the front end's kernel subshell.

JupyterLab >= 4.4 (and Notebook 7) sends widget messages over a kernel *subshell* when the
kernel supports them (ipykernel >= 7): a thread of its own, so a click is handled even while
the main shell runs a cell (``dash.wait()``, a blocking ``xb.fit``). ipykernel 7.4 then
routes a comm's messages back to the shell that last *sent* on that comm — for a widget
created by a cell, the busy main shell — which makes buttons dead again until the cell ends.
:func:`serve_on_subshell` keeps the front end's choice for the given widgets. Their
handlers must be thread-safe (the dashboard's only set flags and trait values).

Front ends without subshells (VS Code, Colab, classic Notebook 6, JupyterLab < 4.4) still
deliver the clicks only when the cell ends.

Example:
    >>> serve_on_subshell(stop_button, pause_button)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any


def _front_end_choice(data: Any, default: str | None) -> str | None:
    return default


def serve_on_subshell(*widgets: Any) -> None:
    """Handle these widgets' messages on the subshell the front end sent them on."""
    for widget in widgets:
        comm = getattr(widget, "comm", None)
        if comm is not None and hasattr(comm, "_reply_subshell_for"):
            comm._reply_subshell_for = _front_end_choice
