"""The lessons' layout in JupyterLab, as a teacher meets it: notebooks 05, 07 and 08 run top
to bottom, then every figure, table and widget lies inside its output area (nothing sticks
out, nothing is clipped, no output scrolls sideways) and no plotly title covers the top tick
label, at 1280 px with the file browser open and at 1920 px; no console error, no failed
request. Screenshots: ``tests/artifacts/layout-*.png``. About 3-5 minutes on 2 busy cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_js import OUTPUT_LAYOUT_PROBLEMS, comm_history, open_and_run_all  # beside this file

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
WIDTHS = (1280, 1920)
SCROLLER = ".jp-NotebookPanel .jp-WindowedPanel-outer"
# 'done' once the last cell printed "all checks passed"; the error when a cell failed
NOTEBOOK_STATE = """() => {
    const model = window.jupyterapp.shell.currentWidget.content.model;
    const outputs = [];
    for (let i = 0; i < model.cells.length; i++) {
        const cell = model.cells.get(i);
        if (cell.type === 'code') outputs.push(cell.outputs.toJSON());
    }
    const error = outputs.flat().find(o => o.output_type === 'error');
    if (error) return `error: ${error.ename}: ${error.evalue}`;
    return JSON.stringify(outputs[outputs.length - 1]).includes('all checks passed') ? 'done' : '';
}"""


def watch(page) -> list[str]:
    """Console errors and failed requests of ``page`` from now on, collected in a list."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("requestfailed", lambda r: seen.append(f"request failed: {r.method} {r.url} "
                                                   f"({r.failure})"))
    page.on("response", lambda r: seen.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400 else None)
    return seen


def assert_clean(page, seen: list[str]) -> None:
    """No uncaught page error, console error or failed request; for a "Comm not found"
    console error, what the page sent and received about that comm is printed first."""
    for line in comm_history(page, seen):
        print(f"[layout] {line}")
    assert not page.errors and not seen, (page.errors, seen)


def run_notebook(lab_server, page, name: str, timeout_s: float) -> None:
    """Open a copy of ``notebooks/<name>.ipynb`` in its own workspace, Run All, and wait
    for its last cell's "all checks passed"."""
    page.set_viewport_size({"width": 1280, "height": 1000})
    open_and_run_all(page, lab_server, name, REPO / "notebooks" / f"{name}.ipynb")
    state = page.wait_for_function(NOTEBOOK_STATE, timeout=timeout_s * 1000,
                                   polling=1000).json_value()
    assert state == "done", state


def scroll_to(page, selector: str) -> None:
    """Scroll the notebook until ``selector`` is rendered, then bring it into view."""
    page.eval_on_selector(SCROLLER, "e => e.scrollTop = 0")
    for _ in range(300):
        if page.locator(selector).count():
            break
        page.eval_on_selector(SCROLLER, "e => e.scrollTop += e.clientHeight * 0.5")
        page.wait_for_timeout(100)
    page.locator(selector).first.scroll_into_view_if_needed()
    page.wait_for_timeout(500)


def layout_problems(page) -> list[str]:
    """OUTPUT_LAYOUT_PROBLEMS on every screen of the notebook, top to bottom (JupyterLab
    lays out only the cells near the view)."""
    page.eval_on_selector(SCROLLER, "e => e.scrollTop = 0")
    problems: list[str] = []
    while True:
        page.wait_for_timeout(700)  # plotly's redraw of what came into view
        problems += [p for p in page.evaluate(OUTPUT_LAYOUT_PROBLEMS) if p not in problems]
        at_end = page.eval_on_selector(SCROLLER, """e => {
            const end = e.scrollTop + e.clientHeight >= e.scrollHeight - 2;
            e.scrollTop += e.clientHeight * 0.6; return end; }""")
        if at_end:
            return problems


def check_widths(page, name: str, shots: dict[str, str]) -> dict[int, list[str]]:
    """At each width (the file browser open at 1280 px): the layout problems, and a
    screenshot of the view around each selector in ``shots`` (label -> selector)."""
    found = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1500)  # plotly's resize and the widgets' reflow
        if width == 1280:
            assert page.locator(".jp-FileBrowser").is_visible()
        found[width] = layout_problems(page)
        print(f"\n[layout] {name} at {width} px: {found[width] or 'nothing out of place'}")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, 0)
        for label, selector in shots.items():
            scroll_to(page, selector)
            page.screenshot(path=str(ARTIFACTS / f"layout-{name}-{label}-{width}.png"))
    return found


def test_07_build_a_model_layout(lab_server, page):
    t0 = time.monotonic()
    seen = watch(page)
    run_notebook(lab_server, page, "07_build_a_model", 600)
    found = check_widths(page, "07", {"builder": ".xb-dashboard",
                                      "accuracy": ".jp-OutputArea-output:has-text('Validation accuracy per epoch')"})
    assert found == {w: [] for w in WIDTHS}, found
    assert_clean(page, seen)
    print(f"\n[layout] 07 checked in {time.monotonic() - t0:.0f}s")


def test_08_playground_layout_with_the_network_panels_open(lab_server, page):
    t0 = time.monotonic()
    seen = watch(page)
    run_notebook(lab_server, page, "08_playground", 900)
    scroll_to(page, "button.xb-panels-toggle")
    page.locator("button.xb-panels-toggle").first.click()
    page.wait_for_function("document.querySelectorAll("
                           "'.xb-network-panels .js-plotly-plot .main-svg').length >= 3")
    found = check_widths(page, "08", {"panels": ".xb-network-panels .js-plotly-plot",
                                      "circles": ".widget-hbox:has(.js-plotly-plot):has-text('circles with a hidden layer')"})
    assert found == {w: [] for w in WIDTHS}, found
    assert_clean(page, seen)
    print(f"\n[layout] 08 checked in {time.monotonic() - t0:.0f}s")


def test_05_hyperparameters_layout(lab_server, page):
    t0 = time.monotonic()
    seen = watch(page)
    run_notebook(lab_server, page, "05_hyperparameters", 900)
    found = check_widths(page, "05", {"comparison": ".xb-run-comparison .xb-runs-table"})
    assert found == {w: [] for w in WIDTHS}, found
    assert_clean(page, seen)
    print(f"\n[layout] 05 checked in {time.monotonic() - t0:.0f}s")
