"""Execute every notebook in notebooks/ top to bottom in a fresh kernel, as a reader would.

Each notebook ends with a "Check" cell that asserts its key results (an ``AssertionError``
there fails the test like any other error); the tests here add what only the executed
notebook can show: outputs, saved widget state, and no files left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

import exburn_nb as xb

nbclient = pytest.importorskip("nbclient")
pytest.importorskip("sklearn", reason="the notebooks' data sets ship with scikit-learn")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))  # the lessons; app.ipynb is the Voila app
APP = NOTEBOOKS / "app.ipynb"
CELL_TIMEOUT_S = 120
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"
DASHBOARD_NOTEBOOKS = {"01_quickstart", "04_fine_tuning", "app"}
MAX_DASHBOARD_STATE = 1_000_000  # bytes of saved widget state per dashboard, its figure's
# front-end code included (plotly's own FigureWidget stored 5 MB of it)

pytestmark = pytest.mark.notebook


def kernel_env() -> dict[str, str]:
    """The kernel's environment: ours, with one intra-op thread unless the caller set one.

    The notebooks train tiny networks, for which one thread is as fast as two on an idle
    machine; on a busy one (other tests, a browser), OpenMP threads spin-waiting for each
    other made runs here up to ten times slower.
    """
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "XB_QUICKSTART_EPOCHS": "5"}  # the quickstart's and app's watched run, shortened


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env=kernel_env())  # raises CellExecutionError, naming the cell, on any error
    return nb, time.perf_counter() - start


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        if o.get("output_type") == "stream":
            parts.append(o["text"])
        elif "text/plain" in o.get("data", {}):
            parts.append(o["data"]["text/plain"])
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed() -> dict[str, tuple[nbformat.NotebookNode, float]]:
    """Notebooks executed so far in this module, so each runs once."""
    return {}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_clean_and_passes_its_checks(path: Path, executed: dict) -> None:
    stored = nbformat.read(path, as_version=4)
    assert stored.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in stored.cells if c.cell_type == "code"), \
        f"{path.name} is committed with outputs: clear them before committing"
    first = stored.cells[0]
    assert first.cell_type == "markdown" and "teaches" in first.source, \
        f"{path.name} must open with a sentence on what it teaches"
    assert sum(c.cell_type == "markdown" for c in stored.cells) >= 5, "too little prose"

    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb, seconds = execute(path)
    executed[path.stem] = (nb, seconds)

    assert "all checks passed" in text_of(nb), f"{path.name}'s Check cell did not run to the end"
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before, \
        f"{path.name} left files behind in notebooks/"
    assert not any(o.get("output_type") == "error" for o in outputs(nb))
    assert any(PLOTLY in o.get("data", {}) or WIDGET_VIEW in o.get("data", {})
               for o in outputs(nb)), f"{path.name} shows no chart"
    print(f"{path.name}: {seconds:.1f} s")


def _executed(name: str, executed: dict) -> nbformat.NotebookNode:
    if name not in executed:
        path = NOTEBOOKS / f"{name}.ipynb"
        executed[name] = execute(path)
    return executed[name][0]


@pytest.mark.parametrize("name", sorted(DASHBOARD_NOTEBOOKS))
def test_dashboard_notebooks_save_widget_state(name: str, executed: dict) -> None:
    """The dashboard is displayed as a widget, and the state of every shown widget is saved
    in the notebook's metadata, so a rendered copy (nbviewer, Voila) can draw it."""
    nb = _executed(name, executed)
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in outputs(nb)
             if WIDGET_VIEW in o.get("data", {})]
    assert views, f"{name} displays no widget"
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    assert set(views) <= set(state), "a displayed widget's state was not saved"
    dashboards = [m for m in state.values()
                  if "xb-dashboard" in m.get("state", {}).get("_dom_classes", [])]
    assert dashboards, "no TrainingDashboard among the saved widgets"
    json.dumps(state)  # plain JSON, as nbformat stores it
    # the figures' saved state holds their points (a rendered copy shows the curves)
    figures = [m["state"] for m in state.values()
               if "xb-figure" in m.get("state", {}).get("_dom_classes", [])]
    assert len(figures) == len(dashboards)
    for fig in figures:
        assert len(fig["_widget_data"][0]["x"]) >= 1, "the saved figure has no points"
        assert len(json.dumps(fig)) < MAX_DASHBOARD_STATE / 2, len(json.dumps(fig))
    assert len(json.dumps(state)) < MAX_DASHBOARD_STATE * len(dashboards), len(json.dumps(state))


def test_app_notebook_is_clean_as_an_app() -> None:
    """The Voila app shows prose and the dashboard: no test text, no check cell, no prints."""
    nb = nbformat.read(APP, as_version=4)
    prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    for word in ("test", "check", "assert", "headless"):
        assert word not in prose, word
    assert not any("assert" in c.source or "print(" in c.source for c in nb.cells)
    executed, _ = execute(APP)
    shown = [o for o in outputs(executed)]
    # the prose with the data's own counts, the dashboard, and the export-only copy of its
    # figure (hidden where the figure runs)
    assert len(shown) == 3 and WIDGET_VIEW in shown[1]["data"], shown
    (x, _), (tx, _) = xb.datasets.digits()
    prose = shown[0]["data"]["text/markdown"]
    assert f"{len(x):,} training digits" in prose and f"{len(tx):,} test digits" in prose
    assert 'class="xb-export-only"' in shown[2]["data"]["text/html"]


def test_quickstart_reaches_the_guide_numbers(executed: dict) -> None:
    """The quickstart shows the guide's MNIST-shaped summary and a test accuracy >= 90%."""
    text = text_of(_executed("01_quickstart", executed))
    assert "Total params: 235,146" in text  # the guide's summary, to the parameter
    accuracy = float(text.split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy >= 0.9, accuracy
