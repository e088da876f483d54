"""The same dashboard notebook under Voilà, driven by headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
EPOCHS = 500  # as in dashboard.ipynb


def test_voila_start_plot_grows_stop(voila_server, page, dashboard):
    t0 = time.monotonic()
    page.goto(f"{voila_server['base']}/")  # Voilà executes the notebook for this request
    dashboard.wait_rendered(timeout_ms=180_000)
    t_ready = time.monotonic() - t0

    seen = dashboard.start_and_watch()
    epochs = dashboard.stop_and_check_halted(EPOCHS)
    dashboard.assert_healthy("body")

    dashboard.screenshot(ARTIFACTS / "voila_dashboard.png")
    print(f"\n[voila] dashboard rendered {t_ready:.1f}s after opening; while training: {seen}; "
          f"Stop took {dashboard.stop_s:.1f}s, after {epochs} of {EPOCHS} epochs; "
          f"test {time.monotonic() - t0:.1f}s")
