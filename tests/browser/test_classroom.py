"""The classroom as a teacher meets it: `make app` and `make demo` offline (no request
leaves the machine, no console error, also after a reload), the app's first screen with
every curve where it belongs, and JupyterLab's status bar reading Busy while a cell blocks
and the controls are clicked (about 4 minutes for the two)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from browser_js import FIGURE, KERNEL_STATUS, TRAIN_LOSS, run_all
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_demo import (
    ANY_CELL_BUSY,
    BLOCKING_CELL_BUSY,
    check_no_dead_widgets,
    notebook_text,
    wait_kernel_connected,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PRETRAINED = 10  # epochs app.ipynb trains before it shows the dashboard
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

TRACE_X_RANGES = f"""() => ({FIGURE}?.data ?? []).map(t => {{
    const xs = (t.x ?? []).filter(v => typeof v === 'number');
    return [t.name, xs.length, xs.length ? Math.min(...xs) : null,
            xs.length ? Math.max(...xs) : null];
}})"""

# Click a control, then read JupyterLab's status bar every 20 ms for `ms`: every kernel
# status shown meanwhile (a flicker to Idle counts).
CLICK_AND_WATCH_STATUS = """async ([button, ms]) => {
    const read = () => document.querySelector('#jp-main-statusbar')?.innerText
        .match(/\\|\\s*(Idle|Busy|Starting|Unknown|Restarting|Dead)/)?.[1] ?? '';
    const seen = new Set([read()]);
    document.querySelector(button).click();
    for (const t0 = performance.now(); performance.now() - t0 < ms; ) {
        seen.add(read());
        await new Promise(r => setTimeout(r, 20));
    }
    return [...seen];
}"""


class Offline:
    """What a page fetched or said that an offline classroom would break on: console
    errors, failed requests and every request to a host that is not this machine."""

    def __init__(self, page):
        self.console: list[str] = []
        self.failed: list[str] = []
        self.external: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text[:300]))
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.url[:200]} HTTP {r.status}"))

    def _failed(self, request) -> None:
        failure = request.failure or ""
        # a local request cancelled by the reload itself (the page goes away), not a failure
        if urlparse(request.url).hostname in LOCAL_HOSTS and "ERR_ABORTED" in failure:
            return
        self.failed.append(f"{request.url[:200]} {failure}")

    def _request(self, request) -> None:
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
            self.external.append(request.url[:200])

    def assert_clean(self) -> None:
        assert not self.external, f"requests to other hosts: {self.external}"
        assert not self.failed and not self.console, \
            f"failed requests: {self.failed}; console errors: {self.console}"


def assert_every_x_within(page, epochs: int) -> list:
    ranges = page.evaluate(TRACE_X_RANGES)
    for name, n, low, high in ranges:
        assert n == 0 or (low >= 0 and high <= epochs), \
            f"{name}: {n} points from x={low} to x={high}, not within [0, {epochs}]: {ranges}"
    return ranges


def test_make_app_first_screen_offline_with_every_curve_in_place(app_server, page, dashboard):
    """`make app`: the runs trained before the dashboard existed plot within their 10
    epochs (the batch curve ran to 190), at 1280 and 1920 px, also after a reload; nothing
    is fetched from the internet and the console shows no error."""
    t0 = time.monotonic()
    offline = Offline(page)
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.goto(app_server.url)  # Voilà executes the notebook for this request
    dashboard.wait_rendered(timeout_ms=240_000)
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) > 0")
    ranges = assert_every_x_within(page, PRETRAINED)
    batch = next(r for r in ranges if r[0].startswith("batch loss"))
    assert batch[1] > PRETRAINED and batch[3] == pytest.approx(PRETRAINED), ranges
    page.wait_for_function(f"{FIGURE}._fullLayout.xaxis.range[1] < {PRETRAINED + 2}")
    text = page.inner_text("body")
    assert "1,438 training digits" in text and "359 test digits" in text, text[:600]
    assert "the ten digits 0 to 9" in text
    dashboard.assert_healthy("body")
    dashboard.screenshot(ARTIFACTS / "voila_app_first_screen_1280.png")
    page.set_viewport_size({"width": 1920, "height": 1100})
    page.wait_for_timeout(1200)
    dashboard.screenshot(ARTIFACTS / "voila_app_first_screen_1920.png")
    # the log scale: a few readable loss ticks, not a label at every digit
    page.click(".widget-checkbox:has-text('log scale') input")
    page.wait_for_function(f"{FIGURE}._fullLayout.yaxis.type === 'log'")
    page.wait_for_timeout(1000)
    ticks = page.eval_on_selector_all(".xb-figure g.ytick text", "es => es.map(e => e.textContent)")
    dashboard.screenshot(ARTIFACTS / "voila_app_log_scale.png")
    assert 2 <= len(ticks) <= 6 and all(t.lstrip("0.")[0] in "125" for t in ticks), ticks
    print(f"\n[classroom] log-scale loss ticks: {ticks}")

    page.reload()  # Voilà runs the notebook again: a fresh kernel, the same first screen
    dashboard.wait_rendered(timeout_ms=240_000)
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) > 0")
    assert_every_x_within(page, PRETRAINED)
    page.wait_for_timeout(2000)  # late errors (a widget model looked up after the reload)
    offline.assert_clean()
    print(f"\n[classroom] make app first screen, 1280/1920 px and a reload, offline: "
          f"{time.monotonic() - t0:.1f}s")


def test_make_demo_status_busy_while_dash_wait_blocks_and_offline(demo_server, page):
    """`make demo`: while `dash.wait()` blocks, clicking Pause and Resume leaves the status
    bar reading Busy (it read Idle after each click); the run, a save and a reload fetch
    nothing from the internet and log no console error."""
    t0 = time.monotonic()
    offline = Offline(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(demo_server.url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    wait_kernel_connected(page)
    select_kernel = page.locator(".jp-Dialog button.jp-mod-accept:has-text('Select')")
    for _ in range(3):  # on a busy machine JupyterLab may ask for the kernel first
        if select_kernel.count():
            select_kernel.click()
            wait_kernel_connected(page)
        run_all(page)
        try:
            page.wait_for_function(ANY_CELL_BUSY, timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    page.wait_for_function(BLOCKING_CELL_BUSY, timeout=240_000)
    page.wait_for_function(
        "(document.querySelector('.xb-status')?.textContent ?? '').startsWith('training')",
        timeout=120_000)
    assert page.evaluate(KERNEL_STATUS) == "Busy"
    paused = page.evaluate(CLICK_AND_WATCH_STATUS, ["button.xb-pause", 3000])
    page.wait_for_function(
        "(document.querySelector('.xb-status')?.textContent ?? '').startsWith('paused')",
        timeout=30_000)
    resumed = page.evaluate(CLICK_AND_WATCH_STATUS, ["button.xb-pause", 3000])
    assert page.evaluate(BLOCKING_CELL_BUSY)
    assert paused == ["Busy"] and resumed == ["Busy"], (paused, resumed)
    page.locator("#jp-main-statusbar").screenshot(path=str(ARTIFACTS / "statusbar_busy.png"))
    page.click("button.xb-stop")
    page.wait_for_function(f"!({ANY_CELL_BUSY})()", timeout=240_000)
    page.wait_for_function(f"({KERNEL_STATUS})() === 'Idle'", timeout=60_000)

    page.keyboard.press("Control+s")
    page.wait_for_function("!document.querySelector('.jp-mod-current.jp-mod-dirty')")
    page.reload()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    wait_kernel_connected(page)  # the widget manager asks the kernel for its models only then
    text = notebook_text(page)  # every cell rendered, so every widget output looks up its model
    page.wait_for_timeout(3000)  # figures load their front end from the kernel
    dead = [text[max(0, i - 300):i + 100] for i in range(len(text))
            if text.startswith("Error displaying widget", i)]
    assert not dead, f"{dead}; console errors: {offline.console}"
    check_no_dead_widgets(text)
    offline.assert_clean()
    print(f"\n[classroom] make demo: status while clicking {paused} / {resumed}; "
          f"offline after a reload; test {time.monotonic() - t0:.1f}s")
