"""The TrainingDashboard in JupyterLab after a long run: Stop stays quick, curves stay
decimated, freezing and Reset weights show what they did (about 40 s)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_js import (
    BATCH_LOSS,
    CLICK_UNTIL_STATUS,
    FIGURE,
    LR_MARKS,
    TRAIN_LOSS,
    open_and_run_all,
)

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "dashboard.ipynb"
ARTIFACTS = HERE.parent / "artifacts"  # git-ignored
PRETRAINED = 1000  # epochs dashboard.ipynb trains before showing the dashboard
POINT_BUDGET = 400  # exburn_nb.widgets.plot.POINT_BUDGET


def test_lab_long_run_stop_freeze_reset(lab_server, page, dashboard):
    t0 = time.monotonic()
    open_and_run_all(page, lab_server, "lab_long_run", NOTEBOOK)
    dashboard.wait_rendered(timeout_ms=180_000)
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) > 0")
    # 1,000 epochs are drawn within the point budget, first point to last
    assert 0 < dashboard.points(TRAIN_LOSS) <= POINT_BUDGET
    assert page.evaluate(f"{FIGURE}.data[{TRAIN_LOSS}].x.at(-1)") == PRETRAINED

    page.click("button.xb-start")
    dashboard.wait_status("training")
    page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.at(-1) > {PRETRAINED + 2}")
    assert dashboard.points(TRAIN_LOSS) <= POINT_BUDGET
    assert dashboard.points(BATCH_LOSS) <= POINT_BUDGET
    stop_s = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-stop", "stopped"])
    assert stop_s >= 0, "Stop did not act"

    # freezing: the toggle changes colour and the status names the frozen layer
    page.click("button.xb-freeze:text('hidden')")
    page.wait_for_function("(document.querySelector('.xb-status')?.textContent ?? '')"
                           ".includes('frozen: hidden')", timeout=30_000)
    assert "mod-info" in page.get_attribute("button.xb-freeze:text('hidden')", "class")

    # Reset weights: no stale progress, empty curves, the legend kept
    page.click("button.xb-reset")
    dashboard.wait_status("weights reset")
    page.wait_for_function(f"{FIGURE}.data[{TRAIN_LOSS}].x.filter(v => v !== null).length === 0")
    assert page.inner_text(".xb-progress-label").strip() == ""
    page.wait_for_function(f"{FIGURE}._fullLayout.xaxis.range[1] <= 1")  # not the old 0-1000
    assert page.locator(".xb-figure g.legend g.traces").count() >= 5
    dashboard.assert_healthy(".jp-NotebookPanel")
    dashboard.screenshot(ARTIFACTS / "lab_after_reset.png")
    print(f"\n[lab] Stop after {PRETRAINED}+ epochs: {stop_s:.2f}s; "
          f"test {time.monotonic() - t0:.1f}s")


def test_lab_live_plot_controls_act_while_fit_blocks(lab_server, page, dashboard):
    """Keras and fastai cannot be stopped from a button; a blocking xb.fit can."""
    t0 = time.monotonic()
    open_and_run_all(page, lab_server, "lab_live_plot", HERE / "live_plot.ipynb")
    dashboard.wait_status("training", timeout_ms=180_000)
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) >= 1",
                           timeout=60_000)
    busy = "() => document.querySelector('.jp-Cell:nth-child(2) .jp-InputPrompt').textContent"
    assert "*" in page.evaluate(busy)
    page.focus(".xb-lr .noUi-handle")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"{FIGURE}.data[{LR_MARKS}].x.filter(v => v !== null).length > 0",
                           timeout=30_000)
    timings = {"pause_s": page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-pause", "paused"])}
    timings["resume_s"] = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-pause", "training"])
    timings["stop_s"] = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-stop", "stopped"])
    assert all(0 <= v < 5 for v in timings.values()), timings  # -1: dead until the cell ends
    page.wait_for_function("document.querySelector('.jp-Cell:last-child .jp-OutputArea')"
                           "?.textContent.includes('epochs trained:')", timeout=60_000)
    epochs = int(page.inner_text(".jp-Cell:last-child .jp-OutputArea").split(":")[1])
    assert 1 <= epochs < 300
    assert page.inner_text(".xb-status").strip() == f"stopped · {epochs} epoch" + (
        "s trained" if epochs != 1 else " trained")
    dashboard.assert_healthy(".jp-NotebookPanel")
    print(f"\n[lab] live_plot in a blocking fit: "
          f"{', '.join(f'{k} {v:.2f}' for k, v in timings.items())}; test {time.monotonic() - t0:.1f}s")
