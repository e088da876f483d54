"""The TrainingDashboard in JupyterLab, driven by headless Chromium (about 30 s a test)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "dashboard.ipynb"
ARTIFACTS = HERE.parent / "artifacts"  # git-ignored
DOCS = HERE.parent.parent / "docs"

EPOCHS = 500  # as in dashboard.ipynb
KERNEL_IDLE = ("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session"
               "?.kernel?.status === 'idle'")


def open_and_run_all(page, lab: dict, name: str) -> None:
    """Open a fresh copy of the notebook in its own workspace (so no tab of an earlier test
    is restored, and it gets its own kernel), wait for the kernel, Run → Run All Cells."""
    shutil.copy(NOTEBOOK, lab["dir"] / f"{name}.ipynb")
    page.goto(f"{lab['base']}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


LAST_OUTPUT = ".jp-NotebookPanel .jp-Cell:last-child .jp-OutputArea"


def rerun_last_cell(page) -> None:
    """Run the last cell (the ``print("frozen:", ...)`` one) again, in place (Ctrl+Enter:
    Shift+Enter would add a new empty last cell)."""
    page.click(".jp-NotebookPanel .jp-Cell:last-child .cm-content")
    page.keyboard.press("Control+Enter")


def wait_last_output(page, text: str) -> None:
    page.wait_for_function("([sel, text]) => document.querySelector(sel)?.textContent"
                           ".includes(text)", arg=[LAST_OUTPUT, text], timeout=60_000)


def test_lab_start_plot_grows_stop(lab_server, page, dashboard):
    t0 = time.monotonic()
    open_and_run_all(page, lab_server, "lab_start_stop")
    dashboard.wait_rendered()
    t_ready = time.monotonic() - t0

    seen = dashboard.start_and_watch()
    epochs = dashboard.stop_and_check_halted(EPOCHS)
    dashboard.assert_healthy(".jp-NotebookPanel")

    # the screenshot, without the file browser, with the dashboard in view
    page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
    shot = ARTIFACTS / "lab_dashboard.png"
    dashboard.screenshot(shot)
    # docs/dashboard.png (shown by the README) is committed: refresh it only when it is
    # missing or on request, so a plain `make test` leaves the work tree clean.
    if not (DOCS / "dashboard.png").exists() or os.environ.get("XB_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "dashboard.png")
    print(f"\n[lab] dashboard rendered {t_ready:.1f}s after opening; while training: {seen}; "
          f"Stop took {dashboard.stop_s:.1f}s, after {epochs} of {EPOCHS} epochs; "
          f"test {time.monotonic() - t0:.1f}s")


def test_lab_freeze_toggle_reaches_kernel(lab_server, page, dashboard):
    """A click on a freeze toggle reaches the model in the kernel, and back."""
    t0 = time.monotonic()
    open_and_run_all(page, lab_server, "lab_freeze")
    dashboard.wait_rendered()
    wait_last_output(page, "frozen: []")
    toggle = page.locator("button.xb-freeze").first
    assert toggle.inner_text().strip() == "hidden"
    assert "mod-active" not in toggle.get_attribute("class")

    toggle.click()
    page.wait_for_function("() => document.querySelector('button.xb-freeze')"
                           ".classList.contains('mod-active')", timeout=30_000)
    rerun_last_cell(page)
    wait_last_output(page, "frozen: ['hidden']")

    toggle.click()  # and back
    page.wait_for_function("() => !document.querySelector('button.xb-freeze')"
                           ".classList.contains('mod-active')", timeout=30_000)
    rerun_last_cell(page)
    wait_last_output(page, "frozen: []")
    dashboard.assert_healthy(".jp-NotebookPanel")
    print(f"\n[lab] freeze toggle reached the kernel and back; test {time.monotonic() - t0:.1f}s")
