"""The live figure keeps plotly's 5 MB front end out of its widget state and sends it from
the kernel when a page asks, even while a cell blocks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import plotly.graph_objects as go
import pytest

from exburn_nb.widgets import plot
from exburn_nb.widgets.frontend.figure import REPLY, REQUEST, FigureWidget, plotly_module

ROOT = Path(__file__).resolve().parents[2]


def test_state_is_small_and_names_plotly():
    fig = plot.make_figure(widget=True)
    assert isinstance(fig, FigureWidget) and isinstance(fig, go.FigureWidget)
    state = fig.get_state()
    assert len(state["_esm"]) < 10_000
    assert len(str(go.FigureWidget._esm)) > 1_000_000  # what a plain FigureWidget stores
    assert len(json.dumps(state, default=str)) < 50_000
    assert state["_xb_plotly"] and state["_xb_plotlyjs"].count(".") == 2


def test_the_module_sent_is_plotlys_es_module():
    module = plotly_module()
    assert module == str(go.FigureWidget._esm).encode()
    assert b"export{" in module[-20_000:]  # an ES module, as the loader imports it


def test_a_blocked_kernel_answers_the_request_on_a_subshell():
    """As JupyterLab >= 4.4 sends it: the request on a subshell while the main shell runs a
    cell; the answer is plotly's module, before the cell ends."""
    jupyter_client = pytest.importorskip("jupyter_client")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", env=env)
    try:
        text = []
        kc.execute_interactive(
            "from exburn_nb.widgets.frontend.figure import FigureWidget\n"
            "fig = FigureWidget()\nprint(fig.comm.comm_id)",
            output_hook=lambda m: text.append(m["content"].get("text", "")), timeout=60)
        comm_id = "".join(text).split()[-1]
        kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
        reply = kc.control_channel.get_msg(timeout=10)["content"]
        if reply.get("status") != "ok":
            pytest.skip(f"this ipykernel has no subshells: {reply}")
        cell = kc.execute("import time\nstart = time.time()\n"
                          "while time.time() - start < 30: pass\n")
        time.sleep(0.5)
        msg = kc.session.msg("comm_msg", {"comm_id": comm_id,
                                          "data": {"method": "custom",
                                                   "content": {"type": REQUEST}}})
        msg["header"]["subshell_id"] = reply["subshell_id"]
        kc.shell_channel.send(msg)
        while True:
            out = kc.get_iopub_msg(timeout=20)
            if out["msg_type"] == "comm_msg" and out["content"]["data"].get("content", {}).get("type") == REPLY:
                break
        assert bytes(out["buffers"][0]) == plotly_module()
        assert not kc.shell_channel.msg_ready()  # the blocking cell has not replied yet
        km.interrupt_kernel()
        while kc.get_shell_msg(timeout=20)["parent_header"].get("msg_id") != cell:
            pass
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_click_message_reaches_the_traces_on_click_and_nothing_else_does():
    """figure.js sends a click as a message of its own ({"type": "xb-click", "callback":
    plotly's points payload}): a click as a synced trait change was merged away by
    ipywidgets' front end while the figure redrew."""
    fig = FigureWidget(data=[go.Scatter(y=[1, 2]), go.Scatter(y=[3, 4])])
    seen = []
    for trace in fig.data:
        trace.on_click(lambda trace, points, state: seen.append((trace.name, points.ys)))
    fig.data[0].name, fig.data[1].name = "a", "b"

    def send(callback):
        fig._handle_custom_msg({"type": "xb-click", "callback": callback}, [])

    payload = {"event_type": "plotly_click", "points": {
        "xs": [1], "ys": [4], "point_indexes": [1], "trace_indexes": [1]},
        "device_state": None, "selector": None}
    send(payload)
    assert seen == [("a", []), ("b", [4])]  # plotly calls every trace, with its points
    seen.clear()
    for bad in ({**payload, "event_type": "plotly_hover"}, "click", None,
                {**payload, "points": {**payload["points"], "trace_indexes": [7]}},
                {**payload, "points": None}):
        send(bad)
    assert seen == []


def test_a_whole_figure_sent_while_a_trace_is_added_reaches_the_page_in_order():
    """A page that loaded plotly late asks for the whole figure (save_state, on a subshell
    thread) while the training thread may be adding a trace. The page applies what it gets
    in order, so the copy must not overtake the change: replaying the messages as the page
    does must give the figure's traces, none twice and none missing: the trace's own
    message first, then the whole figure with it."""
    import threading

    sent, paused, resume = [], threading.Event(), threading.Event()

    class Recording(FigureWidget):
        def send_state(self, key=None):
            keys = [key] if isinstance(key, str) else list(key or [])
            if "_py2js_addTraces" in keys and self._py2js_addTraces and not resume.is_set():
                paused.set()  # the trace is in the figure; its message not yet sent
                resume.wait(10)
            super().send_state(key)
            sent.append((keys, len(self._widget_data)))

    fig = Recording()
    adding = threading.Thread(target=fig.add_scatter, kwargs={"y": [1, 2]})
    adding.start()
    assert paused.wait(10)
    sending = threading.Thread(target=fig.save_state, args=(True,))
    sending.start()
    sending.join(1.0)  # unlocked, the copy would go out now, ahead of the trace's message
    resume.set()
    adding.join(10)
    sending.join(10)
    adds = [i for i, (k, _) in enumerate(sent) if k == ["_py2js_addTraces"]]
    whole = [i for i, (k, _) in enumerate(sent) if "_xb_synced" in k]
    assert len(whole) == 1 and adds and adds[0] < whole[0], sent  # else added twice
    assert sent[whole[0]][1] == len(fig.data) == 1
