"""Issue 22's live surfaces in JupyterLab, driven by headless Chromium: ``watch(run_dir)``
following a script trained in another process (curves, progress, Stop through the run's
stop file, a reload after the run ended), and the TrainingDashboard with ``processes=2``
(the curve fed from rank 0; Pause, Stop and a second Start reaching every rank; no rank
left behind). Values are checked against the run's own files and the model's history;
console errors and failed requests: none. Screenshots at 1280 and 1920 px go to
tests/artifacts/ (about a minute)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from browser_js import (
    BATCH_LOSS,
    CLICK_UNTIL_STATUS,
    FIGURE,
    KERNEL_IDLE,
    TRAIN_LOSS,
    WIDGET_LOADING,
    open_notebook,
    run_all,
)

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARTIFACTS = HERE.parent / "artifacts"  # git-ignored
RUN_EPOCHS = 500  # far more than the test waits for: its Stop ends the run
STOP_EXIT_S = 10  # the script exits this soon after Stop (it stops at the end of its batch)

# A tiny MLP on digits, trained by a script into a run directory, as on a GPU server.
TRAIN_SCRIPT = textwrap.dedent(f"""\
    import sys
    import exburn_nb as xb

    (x, y), _ = xb.datasets.digits()
    spec = xb.input("input", shape=(None, 64)).dense(16, activation="relu").dense(10)
    model = xb.compile(spec, loss="cross_entropy", optimizer="adam", seed=0)
    xb.fit(model, (x, y), epochs={RUN_EPOCHS}, batch_size=16, verbose=False,
           run_dir=sys.argv[1])
    """)

# The train-loss curve and the watch's progress text, taken together once the text shows
# an epoch at or past the curve's last point (null until then): they come in separate
# messages.
PROGRESS_CAUGHT_UP = f"""() => {{
    const label = document.querySelector('.xb-watch .xb-progress-label')?.textContent.trim() ?? '';
    const epoch = Number(label.match(/^epoch (\\d+)\\//)?.[1] ?? -1);
    const trace = {FIGURE}?.data?.[{TRAIN_LOSS}];
    if (!trace || epoch < (trace.x.at(-1) ?? Infinity)) return null;
    return {{x: Array.from(trace.x), y: Array.from(trace.y), label}};
}}"""

# Python code run in the notebook's kernel through the page's own kernel connection; what
# it prints comes back.
KERNEL_EXECUTE = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({code, store_history: false});
    let out = '', err = '';
    future.onIOPub = msg => {
        if (msg.header.msg_type === 'stream') out += msg.content.text;
        if (msg.header.msg_type === 'error') err += `${msg.content.ename}: ${msg.content.evalue}`;
    };
    await future.done;
    return {out, err};
}"""

CHILDREN = "import psutil; print(len(psutil.Process().children(recursive=True)))"
# After Stop: the kernel's children (the forked ranks) gone, and the model's history.
RANKS_GONE = textwrap.dedent("""\
    import json, multiprocessing, time, psutil
    _t0 = time.monotonic()
    while (psutil.Process().children(recursive=True) or multiprocessing.active_children()) \\
            and time.monotonic() - _t0 < 30:
        time.sleep(0.05)
    print(json.dumps({
        "children": [p.pid for p in psutil.Process().children(recursive=True)],
        "active_children": [p.pid for p in multiprocessing.active_children()],
        "waited_s": time.monotonic() - _t0, "state": dash.runner.state,
        "epochs": dash.history["epoch"].tolist(), "loss": dash.history["loss"].tolist()}))
    """)


class PageProblems:
    """Console errors and failed requests of a page (a local request cancelled by a reload
    is not one)."""

    def __init__(self, page):
        self.console: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text[:300]))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.url[:200]} HTTP {r.status}"))

    def _failed(self, request) -> None:
        failure = request.failure or ""
        if urlparse(request.url).hostname == "127.0.0.1" and "ERR_ABORTED" in failure:
            return
        self.failed.append(f"{request.url[:200]} {failure}")

    def check(self, page) -> None:
        assert not page.errors, page.errors
        assert not self.console, self.console
        assert not self.failed, self.failed


def wait_status(page, prefix: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "p => (document.querySelector('.xb-status')?.textContent ?? '').trim().startsWith(p)",
        arg=prefix, timeout=timeout_ms)


def figure(page, trace: int = TRAIN_LOSS) -> dict:
    """The x and y values plotly holds for ``trace`` (None for a gap)."""
    return page.evaluate(f"({{x: Array.from({FIGURE}.data[{trace}].x), "
                         f"y: Array.from({FIGURE}.data[{trace}].y)}})")


def points(page, trace: int = TRAIN_LOSS) -> int:
    return page.evaluate(f"{FIGURE}?.data?.[{trace}]?.x?.length ?? -1")


def epoch_rows(run_dir: Path) -> list[dict]:
    """The epoch rows of the run's history.jsonl, complete lines only."""
    text = (run_dir / "history.jsonl").read_text()
    lines = text.split("\n")[:-1]  # a line still being written has no newline yet
    return [row["epoch"] for row in map(json.loads, lines) if "epoch" in row]


def assert_healthy(page) -> None:
    text = page.inner_text(".jp-NotebookPanel")
    assert "Loading widget" not in text and "Error displaying widget" not in text, text[:2000]
    visible = page.eval_on_selector_all(
        ".jp-NotebookPanel .xb-export-only", "es => es.filter(e => e.offsetParent !== null).length")
    assert visible == 0, "an export-only copy of a figure shows beside the live one"


def shoot(page, selector: str, name: str) -> list[Path]:
    """Screenshots of ``selector`` at 1280 and 1920 px wide, mouse off the plot."""
    shots = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 1920):
        page.set_viewport_size({"width": width, "height": 1200})
        page.wait_for_timeout(1200)  # plotly's resize and the widgets' reflow
        page.locator(selector).scroll_into_view_if_needed()
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        path = ARTIFACTS / f"{name}-{width}.png"
        page.locator(selector).screenshot(path=str(path))
        shots.append(path)
    page.set_viewport_size({"width": 1400, "height": 1400})
    return shots


def settled(page, quiet_ms: int = 1000, timeout_s: float = 30) -> list[int]:
    """The train-loss and batch-loss point counts, once unchanged for ``quiet_ms``."""
    deadline = time.monotonic() + timeout_s
    counts = [points(page), points(page, BATCH_LOSS)]
    while True:
        page.wait_for_timeout(quiet_ms)
        now = [points(page), points(page, BATCH_LOSS)]
        if now == counts:
            return counts
        assert time.monotonic() < deadline, f"the curves still grow while paused: {now}"
        counts = now


def stopped_and_drawn(page) -> dict:
    """After a Stop of the dashboard: no rank left in the kernel, the run stopped, and the
    train-loss curve exactly the model's history (epochs 1..n, its losses); what the
    kernel said."""
    checked = page.evaluate(KERNEL_EXECUTE, RANKS_GONE)
    assert not checked["err"], checked
    kernel = json.loads(checked["out"])
    assert kernel["children"] == [] and kernel["active_children"] == [], kernel
    assert kernel["state"] == "stopped", kernel
    epochs = len(kernel["epochs"])
    page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.length === {epochs}",
                           timeout=30_000)
    drawn = figure(page)
    assert drawn["x"] == kernel["epochs"] == list(range(1, epochs + 1))
    assert same_values(drawn["y"], kernel["loss"])
    status = page.inner_text(".xb-status").strip()
    assert status.startswith(f"stopped · {epochs} epoch"), status
    return kernel


def same_values(drawn: list, expected: list) -> bool:
    return len(drawn) == len(expected) and all(
        d == pytest.approx(e, rel=1e-6, abs=1e-9) for d, e in zip(drawn, expected, strict=True))


def test_lab_watch_follows_a_script_and_stops_it(lab_server, page):
    t0 = time.monotonic()
    problems = PageProblems(page)
    lab = lab_server
    run_dir = lab["dir"] / "watch_run"  # the notebook watches "watch_run", beside it
    script = lab["dir"].parent / "train_watched.py"
    script.write_text(TRAIN_SCRIPT)
    open_notebook(page, lab, "lab_watch", HERE / "watch.ipynb")
    run_all(page)
    # the watch waits for a run that has not started, its Stop disabled
    page.wait_for_selector(".xb-watch .js-plotly-plot.xb-figure .main-svg", timeout=120_000)
    wait_status(page, "waiting for a run to start in ", timeout_ms=60_000)
    assert "watch_run" in page.inner_text(".xb-watch .xb-status")
    assert page.is_disabled(".xb-watch button.xb-stop")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = open(lab["dir"].parent / "train_watched.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_status(page, "training", timeout_ms=120_000)
        assert page.is_enabled(".xb-watch button.xb-stop")

        # the train-loss curve gains points while the script runs, at the file's epochs
        page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) >= 1",
                               timeout=120_000)
        first = points(page)
        t_first = time.monotonic()
        page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.length >= {first + 2}",
                               timeout=60_000)
        grow_s = time.monotonic() - t_first
        # the figure and the progress text of one draw (each comes in its own message)
        t = time.monotonic()
        drawn = page.wait_for_function(PROGRESS_CAUGHT_UP, timeout=10_000).json_value()
        catch_up_s = time.monotonic() - t
        label = drawn["label"]
        rows = epoch_rows(run_dir)  # read after the figure: the file is ahead, or even
        n = len(drawn["x"])
        assert n >= first + 2 and len(rows) >= n, (n, len(rows))
        assert drawn["x"] == [r["epoch"] for r in rows[:n]] == list(range(1, n + 1))
        assert same_values(drawn["y"], [r["loss"] for r in rows[:n]])
        shown = re.match(rf"epoch (\d+)/{RUN_EPOCHS} · batch (\d+)/(\d+)", label)
        assert shown, label
        assert n <= int(shown[1]) <= len(rows) + 1, (label, n, len(rows))
        assert proc.poll() is None, "the run ended before the test could stop it"

        # Stop, in the page: the widget says stopped soon (timed in the page, from the click
        # to the status), the script has exited with "stopped" in run.json
        stop_clicked = time.monotonic()
        stop_s = page.evaluate(CLICK_UNTIL_STATUS, [".xb-watch button.xb-stop", "stopped"])
        returncode = proc.wait(STOP_EXIT_S)
        exit_s = time.monotonic() - stop_clicked
        assert 0 <= stop_s < STOP_EXIT_S, stop_s  # -1: no "stopped" within 30 s
        header = json.loads((run_dir / "run.json").read_text())
        assert returncode == 0 and header["status"] == "stopped", (returncode, header)
        rows = epoch_rows(run_dir)
        status = page.inner_text(".xb-watch .xb-status").strip()
        trained = rows[-1]["epoch"]
        assert status.startswith(f"stopped · {trained} epoch"), (status, trained)
        assert len(rows) < RUN_EPOCHS
        page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.length === {len(rows)}",
                               timeout=30_000)
        final = figure(page)
        assert final["x"] == [r["epoch"] for r in rows]
        assert same_values(final["y"], [r["loss"] for r in rows])
        assert page.is_disabled(".xb-watch button.xb-stop")
        assert_healthy(page)
        shots = shoot(page, ".xb-watch", "watch")

        # save, reload: the run's finished curves are back (the live widget, re-rendered)
        page.keyboard.press("Control+s")
        page.wait_for_function("!document.querySelector('.jp-mod-current.jp-mod-dirty')")
        page.reload()
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.wait_for_selector(".xb-watch .js-plotly-plot.xb-figure .main-svg", timeout=60_000)
        page.wait_for_function(f"!({WIDGET_LOADING})()", timeout=60_000)
        page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) > 0",
                               timeout=60_000)
        reloaded = figure(page)
        assert reloaded["x"] == final["x"] and same_values(reloaded["y"], final["y"])
        assert page.inner_text(".xb-watch .xb-status").strip() == status
        page.wait_for_timeout(1000)  # late errors (a widget model looked up after the reload)
        assert_healthy(page)
        problems.check(page)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    print(f"\n[watch] waiting, then {first} -> {n} points while running (+2 in {grow_s:.2f}s, progress text caught up in {catch_up_s:.2f}s); Stop at epoch {trained} "
          f"(of {RUN_EPOCHS}): status stopped {stop_s:.2f}s after the click (in the page), "
          f"script exited within {exit_s:.2f}s, run.json "
          f"'{header['status']}', {len(rows)} points drawn = {len(rows)} epochs in "
          f"history.jsonl, also after a reload; screenshots {[str(s) for s in shots]}; "
          f"test {time.monotonic() - t0:.1f}s")


def test_lab_dashboard_two_processes_start_stop_no_rank_left(lab_server, page):
    t0 = time.monotonic()
    problems = PageProblems(page)
    open_notebook(page, lab_server, "lab_dashboard_ddp", HERE / "dashboard_distributed.ipynb")
    run_all(page)
    page.wait_for_selector("button.xb-start", timeout=120_000)
    page.wait_for_selector(".xb-dashboard .js-plotly-plot.xb-figure .main-svg", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    before = page.evaluate(KERNEL_EXECUTE, CHILDREN)
    assert before == {"out": "0\n", "err": ""}, before

    page.click("button.xb-start")
    wait_status(page, "training", timeout_ms=120_000)
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) >= 1",
                           timeout=120_000)
    first = points(page)
    page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.length >= {first + 2}",
                           timeout=60_000)
    while_running = points(page)
    ranks = page.evaluate(KERNEL_EXECUTE, CHILDREN)
    assert ranks["out"].strip() == "2", ranks  # two forked ranks train

    # Pause reaches both ranks: nothing more is drawn, both ranks live; Resume goes on
    timings = {"pause_s": page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-pause", "paused"])}
    paused = settled(page)  # the rows sent before the pause, drawn
    page.wait_for_timeout(1500)
    assert [points(page), points(page, BATCH_LOSS)] == paused
    ranks_paused = page.evaluate(KERNEL_EXECUTE, CHILDREN)
    assert ranks_paused["out"].strip() == "2", ranks_paused
    timings["resume_s"] = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-pause", "training"])
    page.wait_for_function(f"{FIGURE}.data[{BATCH_LOSS}].x.length > {paused[1]}",
                           timeout=60_000)

    timings["stop_s"] = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-stop", "stopped"])
    assert all(0 <= v < 5 for v in timings.values()), timings  # -1: no such status in 30 s
    kernel = stopped_and_drawn(page)
    epochs = len(kernel["epochs"])
    assert while_running <= epochs < 300
    assert_healthy(page)
    shots = shoot(page, ".xb-dashboard", "dashboard-processes2")

    # Start again: two new ranks go on from the model's last epoch; Stop; none is left
    page.click("button.xb-start")
    wait_status(page, "training", timeout_ms=60_000)
    page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.length >= {epochs + 2}",
                           timeout=60_000)
    timings["stop_again_s"] = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-stop", "stopped"])
    assert 0 <= timings["stop_again_s"] < 5, timings
    again = stopped_and_drawn(page)
    assert len(again["epochs"]) >= epochs + 2
    assert again["loss"][:epochs] == kernel["loss"]  # the first run's rows, kept
    assert_healthy(page)
    problems.check(page)
    print(f"\n[dashboard processes=2] {first} -> {while_running} points while running, 2 "
          f"ranks; {', '.join(f'{k} {v:.2f}' for k, v in timings.items())} (in the page); "
          f"paused: no point drawn in 1.5 s, 2 ranks alive; after Stop: {epochs} epochs = "
          f"{epochs} points (values equal to the history), kernel children: "
          f"{kernel['children']} (looked for {kernel['waited_s']:.2f}s); Start again: "
          f"{len(again['epochs'])} epochs = points, children {again['children']}; "
          f"screenshots {[str(s) for s in shots]}; test {time.monotonic() - t0:.1f}s")
