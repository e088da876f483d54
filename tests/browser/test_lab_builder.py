"""The ModelBuilder in JupyterLab, driven by headless Chromium: build on the digits by
clicking, watch the parameter count change, compile, train, stop (about 40 s)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from browser_js import open_and_run_all  # beside this file

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent / "artifacts"  # git-ignored
DOCS = HERE.parent.parent / "docs"
EPOCHS = 20_000  # many: Stop must interrupt the run, however busy the machine
SOURCE = f"""import exburn_nb as xb
from exburn_nb.widgets import ModelBuilder

(x, y), (vx, vy) = xb.datasets.digits()
builder = ModelBuilder((x, y), validation_data=(vx, vy), epochs={EPOCHS}, batch_size=64)
builder"""


def params_text(page) -> str:
    return page.inner_text(".xb-builder-params").strip()


def wait_params(page, text: str) -> None:
    page.wait_for_function(
        "t => (document.querySelector('.xb-builder-params')?.textContent ?? '').includes(t)",
        arg=text, timeout=30_000)


def test_lab_build_by_clicking_compile_train_stop(lab_server, page, dashboard):
    t0 = time.monotonic()
    name = "lab_builder"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SOURCE)], metadata={
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"}})
    nbformat.write(nb, lab_server["dir"] / f"{name}.ipynb")
    open_and_run_all(page, lab_server, name)
    page.wait_for_selector("button.xb-builder-add", timeout=120_000)

    # only the output layer: 64 * 10 + 10 parameters
    wait_params(page, "Total params: 650")
    assert page.locator(".xb-builder-row").count() == 1
    assert page.is_enabled("button.xb-builder-compile")

    page.select_option(".xb-builder-add-kind select", "dense")
    page.click("button.xb-builder-add")
    wait_params(page, "Total params: 2,410")  # 64*32 + 32, then 32*10 + 10
    page.select_option(".xb-builder-add-kind select", "dropout")
    page.click("button.xb-builder-add")
    page.wait_for_function("() => document.querySelectorAll('.xb-builder-row').length === 3",
                           timeout=30_000)
    kinds = page.eval_on_selector_all(".xb-builder-kind select", "els => els.map(e => e.value)")
    assert kinds == ["dense", "dropout", "dense"], kinds
    assert "Total params: 2,410" in params_text(page)
    assert "(None, 32)" in page.inner_text(".xb-builder-diagram")
    # one more dense layer, then its delete button: the rows are redrawn in the page
    page.select_option(".xb-builder-add-kind select", "dense")
    page.click("button.xb-builder-add")
    wait_params(page, "Total params: 3,466")  # + 32*32 + 32
    page.locator(".xb-builder-row").nth(2).locator("button.xb-builder-delete").click()
    wait_params(page, "Total params: 2,410")
    page.wait_for_function("() => document.querySelectorAll('.xb-builder-row').length === 3",
                           timeout=30_000)

    page.click(".xb-builder-code-toggle")
    page.wait_for_selector(".xb-builder-code textarea", state="visible", timeout=30_000)
    code = page.input_value(".xb-builder-code textarea")
    assert code.startswith("import exburn_nb as xb") and ".dense(32)" in code, code
    assert page.is_visible("button.xb-builder-copy")

    page.click("button.xb-builder-compile")
    dashboard.wait_rendered()
    page.wait_for_function("() => (document.querySelector('.xb-builder-status')?.textContent"
                           " ?? '').includes('compiled (run 1)')", timeout=30_000)
    seen = start_and_watch(page, dashboard)
    epochs, stop_s = stop_and_check_halted(page, dashboard)
    dashboard.assert_healthy(".jp-NotebookPanel")

    page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
    page.set_viewport_size({"width": 1280, "height": 2000})  # the whole builder in view
    page.mouse.move(0, 0)
    page.locator(".xb-builder").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    shot = ARTIFACTS / "lab_builder.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".xb-builder").screenshot(path=str(shot))
    # docs/builder.png (shown by the README) is committed: refresh it only when missing or
    # on request, so a plain `make test` leaves the work tree clean.
    if not (DOCS / "builder.png").exists() or os.environ.get("XB_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "builder.png")
    print(f"\n[lab] builder: while training {seen}; Stop took {stop_s:.1f}s after "
          f"{epochs} epochs; test {time.monotonic() - t0:.1f}s")


TRAIN_LOSS = 0  # the figure's first trace: one point per epoch


def start_and_watch(page, dashboard) -> dict:
    """Click Start: the status says training and the loss curve grows epoch by epoch."""
    assert dashboard.status().startswith("compiled") or dashboard.status().startswith("idle"), \
        dashboard.status()
    t0 = time.monotonic()
    page.click("button.xb-start")
    dashboard.wait_status("training")
    first = dashboard.wait_points(TRAIN_LOSS, 0)
    grown = dashboard.wait_points(TRAIN_LOSS, first)  # and they keep coming
    return {"epochs_seen": grown, "seconds": round(time.monotonic() - t0, 1)}


def stop_and_check_halted(page, dashboard) -> tuple[int, float]:
    """Click Stop (timed inside the page): the status says stopped, no more points come."""
    page.evaluate("() => { window._xbStopClicked = performance.now(); }")
    page.click("button.xb-stop")
    dashboard.wait_status("stopped", timeout_ms=60_000)
    stop_s = page.evaluate("() => (performance.now() - window._xbStopClicked) / 1000")
    halted = dashboard.points(TRAIN_LOSS)
    page.wait_for_timeout(1500)
    assert dashboard.points(TRAIN_LOSS) == halted, "points kept coming after Stop"
    assert halted < EPOCHS
    return halted, stop_s

