"""The Playground in JupyterLab, driven by headless Chromium: pick spirals, Build, Start,
see the decision boundary change between two screenshots, Stop."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "playground.ipynb"
ARTIFACTS = HERE.parent / "artifacts"  # git-ignored
BOUNDARY = "document.querySelector('.js-plotly-plot.xb-boundary')"
KERNEL_IDLE = ("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session"
               "?.kernel?.status === 'idle'")


def boundary_z(page) -> list:
    return page.evaluate(f"Array.from({BOUNDARY}?.data?.[0]?.z ?? [], r => Array.from(r))")


def status(page) -> str:
    return page.inner_text(".xb-status").strip()


def wait_status(page, prefix: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "p => (document.querySelector('.xb-status')?.textContent ?? '').trim().startsWith(p)",
        arg=prefix, timeout=timeout_ms)


def test_lab_playground_spirals_boundary_moves(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, lab_server["dir"] / "lab_playground.ipynb")
    page.goto(f"{lab_server['base']}/lab/workspaces/lab_playground/tree/lab_playground.ipynb"
              f"?reset&token={lab_server['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    page.wait_for_selector(".js-plotly-plot.xb-boundary .main-svg", timeout=120_000)
    page.wait_for_selector("button.xb-start", timeout=120_000)
    page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")

    # pick spirals and build: new data on the plane, a fresh network and dashboard
    circles_x = page.evaluate(f"Array.from({BOUNDARY}.data[1].x)")
    page.select_option(".xb-dataset select", "spirals")
    page.click("button.xb-build")
    page.wait_for_function(f"xs => JSON.stringify(Array.from({BOUNDARY}?.data?.[1]?.x ?? []))"
                           " !== JSON.stringify(xs)", arg=circles_x, timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    assert status(page).startswith("idle")

    page.click("button.xb-start")
    wait_status(page, "training")
    figure = page.locator(".js-plotly-plot.xb-boundary")
    figure.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)
    first_z = boundary_z(page)
    first = figure.screenshot(path=str(ARTIFACTS / "lab_playground_1.png"))
    # the boundary is redrawn while training: wait until the heatmap data differ, then shoot
    page.wait_for_function(f"z => JSON.stringify(Array.from({BOUNDARY}.data[0].z, r => "
                           "Array.from(r))) !== JSON.stringify(z)", arg=first_z, timeout=60_000)
    page.wait_for_timeout(2000)
    second = figure.screenshot(path=str(ARTIFACTS / "lab_playground_2.png"))
    assert first != second, "the boundary looks the same in both screenshots"
    assert len(first_z) == 60 and boundary_z(page) != first_z

    t_stop = time.monotonic()
    page.click("button.xb-stop")
    wait_status(page, "stopped", timeout_ms=120_000)
    stop_s = time.monotonic() - t_stop
    assert page.is_enabled("button.xb-start")
    assert not page.errors, page.errors
    print(f"\n[lab] playground: spirals built, boundary moved, Stop took {stop_s:.1f}s; "
          f"test {time.monotonic() - t0:.1f}s; screenshots {ARTIFACTS}/lab_playground_*.png")
