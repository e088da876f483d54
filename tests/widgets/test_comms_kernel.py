"""Stop and the learning-rate slider act while a cell blocks, in a real kernel.

The test's client plays a front end without kernel subshells (VS Code, JupyterLab < 4.4,
Notebook 6): it sends each click as a ``comm_msg`` on the main shell channel, with no
``subshell_id``, while a cell blocks in ``xb.fit`` or ``dash.wait()``. The kernel must
handle it on its own subshell, so the run ends early.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ipykernel = pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")
from packaging.version import Version  # noqa: E402

if Version(ipykernel.__version__) < Version("7.4"):
    pytest.skip(f"ipykernel {ipykernel.__version__} cannot route widget messages to a "
                "subshell (7.4 or later needed): clicks wait until the cell ends",
                allow_module_level=True)

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[2]
CELL_TIMEOUT_S = 120
EPOCHS = 2000  # far more than any run here lasts once Stop is clicked

SETUP = """
import json, threading, time
import exburn_nb as xb
(x, y), _ = xb.datasets.digits()
spec = (xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden")
        .dense(10, name="output"))
clicks = []  # (thread name, time) of each Stop click the kernel handled

class Marks(xb.Callback):
    '''Says when the first epoch ends and when the learning rate changes.'''
    def __init__(self):
        self.lr = None
    def on_epoch_end(self, epoch, metrics):
        if metrics["lr"] != self.lr:
            self.lr = metrics["lr"]
            print(f"epoch {epoch} lr {self.lr}", flush=True)

def comm_ids(stop, slider):
    stop.on_click(lambda _: clicks.append((threading.current_thread().name, time.time())))
    print(json.dumps({"stop": stop.comm.comm_id, "lr": slider.comm.comm_id}))
"""


def kernel_env() -> dict[str, str]:
    """Ours, importing this checkout's exburn_nb, one intra-op thread, the live figure."""
    env = {k: v for k, v in os.environ.items() if k not in ("VSCODE_PID", "COLAB_NOTEBOOK_ID")}
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def kc():
    km, client = jupyter_client.manager.start_new_kernel(kernel_name="python3",
                                                         env=kernel_env())
    try:
        run(client, SETUP)
        yield client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def read(kc, msg_id: str, until: str | None = None) -> str:
    """What cell ``msg_id`` printed, up to ``until`` (or to its end); fails on its error."""
    text, deadline = "", time.monotonic() + CELL_TIMEOUT_S
    while until is None or until not in text:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text += content["text"]
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            assert until is None, f"the cell ended without printing {until!r}:\n{text}"
            return text
    return text


def run(kc, code: str) -> str:
    return read(kc, kc.execute(code))


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def send(kc, comm_id: str, data: dict, subshell_id: str | None = None) -> float:
    """Send ``data`` to the comm as a front end does (without subshells: on the main shell);
    returns when it was sent."""
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return time.time()


CLICK = {"method": "custom", "content": {"event": "click"}}
FIT = f"""
model = xb.fit(xb.compile(spec, seed=0), (x, y), epochs={EPOCHS}, verbose=False,
               callbacks=[cb, Marks()])
print(json.dumps({{"epochs": model.epochs_trained, "lr": model.learning_rate,
                  "lrs": model.history["lr"].tolist(), "clicks": clicks}}))
"""


def start_blocking_fit(kc) -> tuple[dict, str]:
    """A ``live_plot``'s comm ids, and the id of its blocking fit's cell, one epoch in."""
    ids = last_json(run(kc, "clicks.clear(); cb = xb.widgets.live_plot()\n"
                            "comm_ids(cb.controls.stop_button, cb.controls.learning_rate)"))
    cell = kc.execute(FIT)
    read(kc, cell, until="epoch 1 lr 0.001")
    return ids, cell


def handled_on(out: dict, sent: float, label: str) -> str:
    """The thread that handled the one Stop click; prints how long after sending."""
    [(thread, handled)] = out["clicks"]
    print(f"{label}: handled {1000 * (handled - sent):.0f} ms after it was sent")
    return thread


def test_stop_ends_a_blocking_fit_from_a_front_end_without_subshells(kc):
    ids, cell = start_blocking_fit(kc)
    sent = send(kc, ids["stop"], CLICK)
    out = last_json(read(kc, cell))
    assert 1 <= out["epochs"] < EPOCHS / 10
    # the kernel's own subshell, while the main thread trained
    assert handled_on(out, sent, "Stop, xb.fit, main shell").startswith("subshell-")


def test_the_learning_rate_slider_acts_during_a_blocking_fit(kc):
    ids, cell = start_blocking_fit(kc)
    send(kc, ids["lr"], {"method": "update", "state": {"value": 0.05}, "buffer_paths": []})
    read(kc, cell, until="lr 0.05")  # an epoch trained at the new rate
    send(kc, ids["stop"], CLICK)
    out = last_json(read(kc, cell))
    assert out["epochs"] < EPOCHS / 10
    assert out["lr"] == 0.05
    assert out["lrs"][0] == 0.001 and 0.05 in out["lrs"]


def test_a_front_ends_subshell_is_kept(kc):
    """JupyterLab >= 4.4 sends on a subshell of its own; the click is handled there, not
    on the main shell the widget last sent from (ipykernel 7.4's default)."""
    kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
    subshell = kc.control_channel.get_msg(timeout=10)["content"]["subshell_id"]
    ids, cell = start_blocking_fit(kc)
    sent = send(kc, ids["stop"], CLICK, subshell_id=subshell)
    out = last_json(read(kc, cell))
    assert 1 <= out["epochs"] < EPOCHS / 10
    assert handled_on(out, sent, "Stop, xb.fit, front end's subshell") == f"subshell-{subshell}"


def test_stop_ends_dash_wait_from_a_front_end_without_subshells(kc):
    ids = last_json(run(kc, "clicks.clear()\n"
                            "dash = xb.widgets.TrainingDashboard(xb.compile(spec, seed=0), (x, y),\n"
                            f"                                    epochs={EPOCHS})\n"
                            "comm_ids(dash.stop_button, dash.learning_rate)"))
    cell = kc.execute("dash.start()\n"
                      "while dash.model.epochs_trained < 1: time.sleep(0.01)\n"
                      "print('started', flush=True)\n"
                      "dash.wait()\n"
                      "print(json.dumps({'epochs': dash.model.epochs_trained, 'clicks': clicks}))")
    read(kc, cell, until="started")
    sent = send(kc, ids["stop"], CLICK)
    out = last_json(read(kc, cell))
    assert 1 <= out["epochs"] < EPOCHS / 10
    assert handled_on(out, sent, "Stop, dash.wait(), main shell").startswith("subshell-")
