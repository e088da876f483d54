"""RunComparison in JupyterLab, driven by headless Chromium: Start, live curves, a click on a
table row, Start on a finished experiment, Train best (its rate shown exactly), the layout at
1280 px (file browser open) and 1920 px, no console error and no failed request."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from browser_js import OUTPUT_LAYOUT_PROBLEMS, open_and_run_all  # beside this file
from test_layout import watch

from exburn_nb.widgets.compare import HIGHLIGHT, PANELS, SERIES

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"  # git-ignored
CURVES = "document.querySelector('.js-plotly-plot.xb-compare-curves')"
RUNS, EPOCHS = 4, 120  # long enough (seconds) for the curves to be seen growing
SOURCE = f"""
import exburn_nb as xb
(x, y), (tx, ty) = xb.datasets.digits()
def build(p):
    return (xb.input("input", shape=(None, 64)).dense(p["units"], activation="relu",
            name="hidden").dense(10, name="output"))
exp = xb.Experiment(build, (x, y), validation_data=(tx, ty), epochs={EPOCHS}, batch_size=64,
                    accuracy=True, params={{"units": [8, 32], "learning_rate": [3e-3, 7e-3]}})
view = xb.widgets.RunComparison(exp)
view
"""


def points(page) -> int:
    """Points drawn on the browser's curves figure (gaps between runs not counted)."""
    return page.evaluate(f"({CURVES}?.data ?? []).reduce((n, t) => n + (t.x ?? [])"
                         ".filter(v => v !== null).length, 0)")


def highlighted(page) -> set:
    """The runs on the browser's highlight traces."""
    first = HIGHLIGHT * PANELS * len(SERIES)
    return set(page.evaluate(f"{CURVES}.data.slice({first}, {first + PANELS * len(SERIES)})"
                             ".flatMap(t => t.customdata ?? []).filter(r => r !== null)"))


def test_lab_compare_start_live_curves_train_best(lab_server, page):
    t0 = time.monotonic()
    failures = watch(page)  # console errors and failed requests
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SOURCE)]
    nbformat.write(nb, lab_server["dir"] / "compare.ipynb")
    open_and_run_all(page, lab_server, "compare")
    page.wait_for_selector("button.xb-compare-start", timeout=120_000)
    page.wait_for_selector(".js-plotly-plot.xb-compare-curves .main-svg", timeout=120_000)
    assert points(page) == 0

    page.click("button.xb-compare-start")
    seen = []
    deadline = time.monotonic() + 240
    while f"{RUNS} runs ({RUNS} finished)" not in page.inner_text(".xb-compare-status"):
        assert time.monotonic() < deadline, page.inner_text(".xb-compare-status")
        seen.append(points(page))
        page.wait_for_timeout(200)
    page.wait_for_timeout(1000)
    final = points(page)
    # 4 runs x 40 epochs x (loss, val_loss, accuracy, val_accuracy)
    assert final == RUNS * EPOCHS * 4
    growing = sorted(set(p for p in seen if 0 < p < final))
    assert len(growing) >= 2, f"the curves did not grow while training: {seen}"
    assert page.locator(".xb-runs-table tbody tr").count() == RUNS
    assert page.locator(".xb-run-comparison .js-plotly-plot .parcoords").count() == 1

    # a click on a table row highlights that run's curves, as a click on a curve does
    row = page.locator(".xb-runs-table tbody tr").nth(2)
    run = int(row.locator("td").first.inner_text())
    row.click()
    page.wait_for_function(f"{CURVES}.data[{HIGHLIGHT * PANELS * len(SERIES)}]"
                           ".customdata?.some(r => r !== null)", timeout=30_000)
    assert highlighted(page) == {run}
    assert page.locator(".xb-runs-table tbody tr.xb-highlighted").count() == 1
    assert "state" in page.inner_text(".xb-runs-table thead") and \
        "<NA>" not in page.inner_text(".xb-runs-table")
    # Start when every run is finished says so
    assert page.is_enabled("button.xb-compare-start")
    page.click("button.xb-compare-start")
    page.wait_for_function("(document.querySelector('.xb-compare-notice')?.textContent ?? '')"
                           ".includes('every run is finished')", timeout=30_000)

    page.click("button.xb-compare-best")
    page.wait_for_selector(".xb-run-comparison .xb-dashboard button.xb-start", timeout=60_000)
    page.wait_for_timeout(1000)  # a browser that snapped the slider would have said so
    readout = page.inner_text(".xb-run-comparison .xb-dashboard .xb-lr .widget-readout")
    assert any(float(readout) == pytest.approx(rate, rel=1e-3) for rate in (3e-3, 7e-3)), readout
    assert not page.errors, page.errors
    layout = {}
    for width in (1920, 1280):  # drawn at 1400 px: wider, then narrower; the figures follow
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1500)
        if width == 1280:
            assert page.locator(".jp-FileBrowser").is_visible()
        layout[width] = page.evaluate(OUTPUT_LAYOUT_PROBLEMS)
        page.mouse.move(0, 0)
        page.locator(".xb-runs-table").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"lab_compare-{width}.png"))
    assert layout == {1280: [], 1920: []}, layout
    assert not failures, failures
    page.mouse.move(0, 0)
    page.locator(".xb-run-comparison").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab_compare.png"), full_page=True)
    print(f"\n[lab] RunComparison: points while training {growing[:8]}..., final {final}; "
          f"test {time.monotonic() - t0:.1f}s")
