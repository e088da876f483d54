"""An experiment's Optuna study as optuna-dashboard shows it: its own WSGI app, called in
process on the same storage the ``optuna-dashboard`` command opens, finds every run's
learning curve (the intermediate values are the history's metric per epoch), its params
with their distributions and its user attributes."""

import io
import json
import math

import pytest
import torch

import exburn_nb as xb

pytest.importorskip("optuna")
optuna_dashboard = pytest.importorskip("optuna_dashboard")


def get(app, path):
    """GET ``path`` from the WSGI ``app``: the decoded JSON body."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO()}
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_dashboard_finds_each_runs_curve_params_and_attributes(tmp_path, data, kind):
    if kind == "sqlite":
        storage = dashboard_storage = f"sqlite:///{tmp_path / 'study.db'}"
    else:  # the journal form: optuna-dashboard takes the file's path
        dashboard_storage = str(tmp_path / "study.log")
        storage = f"journal://{dashboard_storage}"
    x, y = data
    spec = xb.input("input", shape=(None, 8)).dense(2, name="output")
    exp = xb.Experiment(spec, (x, y), validation_data=(x, y), search="optuna",
                        params={"learning_rate": xb.space.loguniform(1e-3, 1e-1),
                                "batch_size": [32, 48]},
                        n_trials=3, epochs=3, pruner=None, storage=storage,
                        study_name="dashboard")
    exp.run()

    app = optuna_dashboard.wsgi(dashboard_storage)  # what `optuna-dashboard <storage>` serves
    [study] = [s for s in get(app, "/api/studies")["study_summaries"] if s["study_name"] == "dashboard"]
    detail = get(app, f"/api/studies/{study['study_id']}")
    assert detail["has_intermediate_values"]
    runs = exp.runs
    trials = sorted(detail["trials"], key=lambda t: t["number"])
    assert [t["number"] for t in trials] == [0, 1, 2]
    for trial in trials:
        rows = runs[runs["run"] == trial["number"]]
        curve = [(v["step"], v["value"]) for v in trial["intermediate_values"]]
        assert curve == list(zip(rows["epoch"].tolist(), rows["val_loss"].tolist(),
                                 strict=True))
        assert trial["values"] == [min(rows["val_loss"])]
        params = {p["name"]: p for p in trial["params"]}
        assert params["learning_rate"]["distribution"] == {
            "type": "FloatDistribution", "low": 1e-3, "high": 1e-1, "step": None, "log": True}
        assert params["batch_size"]["distribution"]["type"] == "CategoricalDistribution"
        run = exp.results.get(trial["number"])
        assert math.isclose(float(params["learning_rate"]["param_external_value"]),
                            run.params["learning_rate"])
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"run": str(run.run), "state": "finished", "epochs": "3",
                "seed": str(run.seed)}.items() <= attrs.items()
        assert float(attrs["seconds"]) == pytest.approx(run.seconds)
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    assert {"run", "epochs", "seconds"} <= sortable
