"""Every private name of another library that exburn_nb uses, in one place.

Each function here says what it does and wraps one internal; :data:`BORROWED` lists them
with a check of their shape, which ``tests/widgets/test_borrowed.py`` runs against the
installed versions, so an upgrade that moves one fails with the library, its version and
the attribute named. ``pyproject.toml`` bounds the versions these were checked with.

- ipykernel (>= 7.4): ``Comm._reply_subshell_for(data, default)``, the hook the kernel asks
  where to handle a comm's message (kernel subshells, JEP 91), and the kernel's
  ``shell_channel_thread`` (None without subshells).
- traitlets: ``HasTraits._trait_values``, to set a synced trait without a change event.
- plotly: ``BaseFigure._data`` / ``_layout`` (the figure's current state), the
  ``FigureWidget`` traits ``_widget_data`` / ``_widget_layout`` (what a new view draws)
  and ``_config`` (plotly.js config), and ``FigureWidget._esm`` (its front end).

Example:
    >>> import plotly.graph_objects as go
    >>> data, layout = copy_figure_state(go.Figure(data=[go.Scatter(y=[1, 2])]))
    >>> data[0]["y"]
    [1, 2]
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

COPY_ATTEMPTS = 3  # another thread may change a figure while its state is copied
# plotly's FigureWidget traits: what a new view of the figure draws
FIGURE_DATA_TRAIT, FIGURE_LAYOUT_TRAIT = "_widget_data", "_widget_layout"


# ------------------------------------------------------------------ ipykernel
def can_route_comm_messages(comm: Any) -> bool:
    """Whether the kernel asks ``comm`` where to handle its messages (ipykernel >= 7.4).

    Example:
        >>> can_route_comm_messages(None)
        False
    """
    return hasattr(comm, "_reply_subshell_for")


def route_comm_messages(comm: Any, route: Callable[[Any, str | None], str | None]) -> bool:
    """Make ``route(data, front_end_subshell) -> subshell id or None`` decide where the
    kernel handles ``comm``'s messages (ipykernel >= 7.4); False where the comm has no
    such hook (ipykernel < 7.4, other kernels, plain Python).

    Example:
        >>> route_comm_messages(object(), lambda data, default: default)
        False
    """
    if not can_route_comm_messages(comm):
        return False
    comm._reply_subshell_for = route
    return True


def kernel_has_subshells() -> bool:
    """Whether this process runs an ipykernel that has started subshells support.

    Example:
        >>> kernel_has_subshells()  # plain Python: no kernel
        False
    """
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return False
    return Kernel.initialized() and getattr(Kernel.instance(), "shell_channel_thread",
                                            None) is not None


# ------------------------------------------------------------------ traitlets
def set_traits_silently(obj: Any, **values: Any) -> None:
    """Set traits of ``obj`` without validation or change events (a view that is open
    already got the same values as changes).

    Example:
        >>> import traitlets
        >>> class T(traitlets.HasTraits):
        ...     n = traitlets.Int(0)
        >>> t = T(); t.observe(print, "n"); set_traits_silently(t, n=3); t.n
        3
    """
    obj._trait_values.update(values)


# ------------------------------------------------------------------ plotly
def copy_figure_state(fig: Any, attempts: int = COPY_ATTEMPTS) -> tuple[list, dict] | None:
    """Deep copies of a plotly figure's current data and layout, or None when another
    thread changed the figure during each of ``attempts`` tries (the caller keeps the
    state it had).
    """
    for _ in range(attempts):
        try:
            return copy.deepcopy(fig._data), copy.deepcopy(fig._layout)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    log.debug("a figure changed during %d attempts to copy its state", attempts)
    return None


def set_figure_config(widget: Any, config: dict) -> None:
    """Give a plotly ``FigureWidget`` its plotly.js config (``responsive``,
    ``displaylogo``, ...): plotly has no public setter for a widget's config.

    Example:
        >>> set_figure_config(fig, {"displaylogo": False})  # doctest: +SKIP
    """
    widget._config = config


def dispatch_click(widget: Any, callback: Any) -> bool:
    """Hand a click that plotly's front end would have sent as a trait change (its
    ``_js2py_pointsCallback`` payload) to plotly's own handler, which calls the clicked
    traces' ``on_click`` callbacks. Anything but a click payload is ignored (False).

    Example:
        >>> dispatch_click(fig, {"event_type": "plotly_click", "points": {"xs": [1],
        ...     "ys": [2], "point_indexes": [0], "trace_indexes": [0]}})  # doctest: +SKIP
        True
    """
    if not isinstance(callback, dict) or callback.get("event_type") != "plotly_click":
        return False
    points = callback.get("points")
    traces = points.get("trace_indexes") if isinstance(points, dict) else None
    if not isinstance(traces, list) or not all(
            isinstance(t, int) and 0 <= t < len(widget.data) for t in traces):
        return False
    widget._handler_js2py_pointsCallback({"new": callback})
    return True


def plotly_widget_module() -> str:
    """The ES module of plotly's ``FigureWidget`` front end (about 5 MB of JavaScript).

    Example:
        >>> len(plotly_widget_module()) > 1_000_000
        True
    """
    import plotly.graph_objects as go

    return str(go.FigureWidget._esm)


# ------------------------------------------------------------------ the checks
@dataclass(frozen=True)
class Borrowed:
    """One borrowed internal: the library (its import name), the attribute, what we use
    it for, and a check that raises ``AssertionError`` saying how it differs."""

    library: str
    attribute: str
    purpose: str
    check: Callable[[], None]


def _check_reply_subshell_for() -> None:
    import inspect

    from ipykernel.comm import Comm

    hook = getattr(Comm, "_reply_subshell_for", None)
    assert callable(hook), "ipykernel.comm.Comm has no method _reply_subshell_for"
    params = list(inspect.signature(hook).parameters)
    assert params == ["self", "data", "default"], f"its parameters are {params}"
    import ipykernel.kernelbase as kb

    source = inspect.getsource(kb.Kernel)
    assert '"_reply_subshell_for"' in source, "the kernel no longer asks comms for it"


def _check_shell_channel_thread() -> None:
    from ipykernel.kernelbase import Kernel

    assert "shell_channel_thread" in Kernel.class_traits(), \
        "ipykernel.kernelbase.Kernel has no trait shell_channel_thread"


def _check_trait_values() -> None:
    import traitlets

    class Probe(traitlets.HasTraits):
        n = traitlets.Int(0)

    probe, seen = Probe(), []
    probe.observe(seen.append, "n")
    assert isinstance(getattr(probe, "_trait_values", None), dict), \
        "HasTraits instances have no dict _trait_values"
    set_traits_silently(probe, n=3)
    assert probe.n == 3 and not seen, "setting _trait_values no longer sets the trait silently"


def _check_figure_state() -> None:
    import plotly.graph_objects as go

    fig = go.Figure(data=[go.Scatter(y=[1, 2])], layout={"height": 300})
    assert isinstance(getattr(fig, "_data", None), list), "Figure._data is not a list"
    assert isinstance(getattr(fig, "_layout", None), dict), "Figure._layout is not a dict"
    data, layout = copy_figure_state(fig)
    assert list(data[0]["y"]) == [1, 2] and layout["height"] == 300, \
        "_data/_layout no longer hold the figure's traces and layout"


def _check_widget_traits() -> None:
    import plotly.graph_objects as go

    traits = go.FigureWidget.class_traits(sync=True)
    for name in (FIGURE_DATA_TRAIT, FIGURE_LAYOUT_TRAIT, "_config"):
        assert name in traits, f"FigureWidget has no synced trait {name}"


def _check_widget_module() -> None:
    module = plotly_widget_module()
    assert len(module) > 1_000_000 and "export" in module[-20_000:], \
        "FigureWidget._esm is no longer plotly's bundled ES module"


def _check_dispatch_click() -> None:
    import plotly.graph_objects as go

    fig, seen = go.FigureWidget(data=[go.Scatter(y=[1, 2])]), []
    fig.data[0].on_click(lambda trace, points, state: seen.append(points.ys))
    assert dispatch_click(fig, {"event_type": "plotly_click", "points": {
        "xs": [1], "ys": [2], "point_indexes": [1], "trace_indexes": [0]},
        "device_state": None, "selector": None}), "a click payload was refused"
    assert seen == [[2]], f"plotly's points handler called on_click with {seen}"


BORROWED = (
    Borrowed("ipykernel", "Comm._reply_subshell_for",
             "widget clicks act while a cell blocks (comms.serve_on_subshell)",
             _check_reply_subshell_for),
    Borrowed("ipykernel", "Kernel.shell_channel_thread",
             "whether the kernel can make a subshell of its own", _check_shell_channel_thread),
    Borrowed("traitlets", "HasTraits._trait_values",
             "a figure's saved state, set without change events (figure.save_state)",
             _check_trait_values),
    Borrowed("plotly", "BaseFigure._data / _layout",
             "a figure's current state, copied for its saved state", _check_figure_state),
    Borrowed("plotly", "FigureWidget._widget_data / _widget_layout / _config",
             "what a new view draws; the live plot's plotly.js config", _check_widget_traits),
    Borrowed("plotly", "FigureWidget._handler_js2py_pointsCallback",
             "a click sent as a message of its own reaches the traces' on_click",
             _check_dispatch_click),
    Borrowed("plotly", "FigureWidget._esm",
             "plotly's front end, sent by the kernel once per page", _check_widget_module),
)
