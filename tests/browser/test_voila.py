"""`make app`: the classroom app (notebooks/app.ipynb) under Voilà, in headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_js import CLICK_UNTIL_STATUS, FIGURE, LAYOUT_PROBLEMS, TRAIN_LOSS

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PRETRAINED = 10  # epochs app.ipynb trains before it shows the dashboard


def test_voila_app_opens_with_its_curves_and_no_test_text(app_server, page, dashboard):
    t0 = time.monotonic()
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.goto(app_server.url)  # Voilà executes the notebook for this request
    dashboard.wait_rendered(timeout_ms=180_000)
    t_ready = time.monotonic() - t0
    # every point that exists is drawn on first render, not only after Start
    page.wait_for_function(f"({FIGURE}?.data?.[{TRAIN_LOSS}]?.x?.length ?? 0) > 0")
    assert dashboard.points(TRAIN_LOSS) == PRETRAINED
    assert dashboard.points(1) == PRETRAINED  # val loss
    assert dashboard.status().startswith(f"idle · {PRETRAINED} epochs trained")
    text = page.inner_text("body")
    for leftover in ("test suite", "Check", "assert", "import exburn_nb"):
        assert leftover not in text, leftover
    assert "Watch a network learn" in text
    assert not page.evaluate(LAYOUT_PROBLEMS)

    # Start, watch it grow, Stop
    page.click("button.xb-start")
    dashboard.wait_status("training")
    dashboard.wait_points(TRAIN_LOSS, PRETRAINED + 1)
    stop_s = page.evaluate(CLICK_UNTIL_STATUS, ["button.xb-stop", "stopped"])
    assert stop_s >= 0, "Stop did not act"
    dashboard.assert_healthy("body")
    bad = [e for e in page.errors if "setData" in e]
    assert not bad, bad
    dashboard.screenshot(ARTIFACTS / "voila_app.png")
    print(f"\n[voila] app rendered {t_ready:.1f}s after opening with {PRETRAINED} epochs drawn; "
          f"Stop {stop_s:.2f}s; test {time.monotonic() - t0:.1f}s")
