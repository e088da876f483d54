"""An executed notebook exported with nbconvert --to html shows the final curves: the live
figure cannot run there, so its export-only copy shows (about 20 s)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import plotly
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
EPOCHS = 3


def executed_export(tmp_path: Path, renderer: str) -> str:
    """The HTML of a notebook that ran a blocking fit with the live plot and showed a
    dashboard with this renderer, exported as `jupyter nbconvert --to html`."""
    nbclient = pytest.importorskip("nbclient")
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell(
        "import exburn_nb as xb\n"
        f"xb.widgets.set_renderer({renderer!r})\n"
        "(x, y), _ = xb.datasets.digits()\n"
        "spec = xb.input('input', shape=(None, 64)).dense(10, name='output')\n"
        "model = xb.compile(spec, loss='cross_entropy', seed=0)\n"
        f"xb.fit(model, (x, y), epochs={EPOCHS}, verbose=False,\n"
        "       callbacks=[xb.widgets.live_plot()]);"),
        nbformat.v4.new_code_cell("xb.widgets.TrainingDashboard(model, (x, y), epochs=1)")]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    html, _ = HTMLExporter().from_notebook_node(nb)
    return html


@pytest.mark.parametrize(("renderer", "figures"), [
    ("widget", 2),  # the export-only copies of the fit's figure and the dashboard's
    ("static", 1),  # the fit's static figure (the dashboard's is inside its widget)
])
def test_html_export_shows_the_final_curves(page, tmp_path, renderer, figures):
    html = executed_export(tmp_path, renderer)
    assert len(html) < 3_000_000, len(html)  # no 5 MB of widget JavaScript per figure
    path = tmp_path / "export.html"
    path.write_text(html)
    # offline, as here: plotly.js from its CDN is served from plotly's own copy; the
    # widget manager's CDN script does not load, as in any export viewed offline
    page.route("https://cdn.plot.ly/**", lambda route: route.fulfill(
        path=str(PLOTLY_JS), content_type="application/javascript"))
    page.route("https://**", lambda route: route.abort())
    page.goto(path.as_uri())
    shown = page.locator(".js-plotly-plot")
    shown.first.wait_for(timeout=60_000)
    assert shown.count() == figures
    for i in range(figures):
        assert shown.nth(i).is_visible()
        xs = page.evaluate("(i) => document.querySelectorAll('.js-plotly-plot')[i].data[0].x", i)
        assert list(xs) == list(range(1, EPOCHS + 1)), xs  # the train loss, every epoch
    shown.first.screenshot(path=str(REPO / "tests" / "artifacts" / f"export-{renderer}.png"))
