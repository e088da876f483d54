"""xb.Experiment without Optuna: routing, grid/random, failures, stop, save/load, seeds."""

import threading

import pandas as pd
import pytest
import torch

import exburn_nb as xb
from exburn_nb.experiment import ExperimentResults, run_seed


@pytest.fixture(scope="module")
def small(digits):
    (x, y), (tx, ty) = digits
    return (x[:300], y[:300]), (tx[:150], ty[:150])


def spec(units=16):
    return (xb.input("input", shape=(None, 64)).dense(units, activation="relu", name="hidden")
            .dense(10, name="output"))


def build(params):
    return spec(params["units"])


def make(small, **kw):
    (data, val) = small
    options = dict(validation_data=val, epochs=2, batch_size=64)
    options.update(kw)
    return xb.Experiment(options.pop("build", build), data, **options)


# ------------------------------------------------------------------ routing
def test_params_are_routed_to_compile_fit_and_build(small):
    exp = make(small, params={"learning_rate": [1e-2], "optimizer": ["sgd"], "units": [8],
                              "batch_size": [32], "clip_norm": [1.0]})
    assert exp.routes == {"learning_rate": "compile", "optimizer": "compile", "units": "build",
                          "batch_size": "fit", "clip_norm": "fit"}
    model, config = exp.prepare_run(params={"learning_rate": 1e-2, "optimizer": "sgd",
                                            "units": 8, "batch_size": 32, "clip_norm": 1.0},
                                    seed=5)
    assert (model.optimizer, model.learning_rate) == ("sgd", 1e-2)
    assert model.layers["hidden"].out_features == 8
    assert (config.batch_size, config.clip_norm, config.epochs, config.seed) == (32, 1.0, 2, 5)


@pytest.mark.parametrize("build_arg, params, match", [
    (spec(), {"units": [8]}, "'units' is neither a compile option"),
    (build, {"units": [8], "colour": ["red"]}, "'colour' is neither"),
    (build, {"units": [8], "batch_size": [0]}, "batch_size must be an integer >= 1"),
    (build, {"units": [8], "optimizer": ["adamm"]}, "adamm"),
    (build, {"units": []}, r"params\['units'\] must be a non-empty list"),
])
def test_bad_params_are_refused_before_any_run(small, build_arg, params, match):
    with pytest.raises(ValueError, match=match):
        make(small, build=build_arg, params=params)


def test_bad_settings_are_refused(small):
    with pytest.raises(ValueError, match="needs validation_data"):
        make(small, validation_data=None, params={"units": [8]})
    with pytest.raises(ValueError, match="needs accuracy=True"):
        make(small, params={"units": [8]}, metric="val_accuracy")
    with pytest.raises(ValueError, match="search must be one of"):
        make(small, params={"units": [8]}, search="bayes")
    with pytest.raises(ValueError, match="n_trials must be an integer"):
        make(small, params={"units": [8]}, search="random")
    with pytest.raises(ValueError, match="continuous"):
        make(small, params={"units": [8], "learning_rate": xb.space.uniform(1e-3, 1e-2)})
    with pytest.raises(ValueError, match="'colour' is neither"):
        make(small, params={"units": [8]}, colour="red")


# ------------------------------------------------------------------ grid and random
def test_grid_runs_every_combination_with_one_tidy_frame(small):
    exp = make(small, params={"units": [4, 8], "learning_rate": [1e-3, 1e-2],
                              "epochs": xb.space.integers(1, 2)})
    exp.run()
    summary = exp.summary
    assert len(summary) == 8 and set(summary.state) == {"finished"}
    combos = set(zip(summary.units, summary.learning_rate, summary.epochs, strict=True))
    assert len(combos) == 8
    runs = exp.runs
    assert list(runs.columns[:5]) == ["run", "units", "learning_rate", "epochs", "epoch"]
    assert {"loss", "val_loss", "lr", "state"} <= set(runs.columns)
    assert len(runs) == int(summary.epochs.sum())
    best = summary.loc[summary.best_val_loss.idxmin()]
    assert exp.best == {"units": best.units, "learning_rate": best.learning_rate,
                        "epochs": best.epochs}
    assert exp.best_model.history.val_loss.min() == pytest.approx(best.best_val_loss)


def test_random_draws_n_trials_reproducibly(small):
    params = {"learning_rate": xb.space.loguniform(1e-4, 1e-1), "units": xb.space.integers(
        4, 64, log=True), "optimizer": ["adam", "sgd"]}
    a = make(small, params=params, search="random", n_trials=3, seed=7).run()
    b = make(small, params=params, search="random", n_trials=3, seed=7).run()
    assert len(a.summary) == 3
    pd.testing.assert_frame_equal(a.runs.drop(columns=["seconds", "samples_per_s"]),
                                  b.runs.drop(columns=["seconds", "samples_per_s"]))
    lrs = a.summary.learning_rate
    assert ((lrs >= 1e-4) & (lrs <= 1e-1)).all() and a.summary.units.between(4, 64).all()
    c = make(small, params=params, search="random", n_trials=3, seed=8).run()
    assert not c.summary.learning_rate.equals(lrs)


def test_a_run_is_reproducible_alone_from_its_seed(small):
    (data, val) = small
    exp = make(small, params={"units": [8, 16]}, seed=3).run()
    model, config = exp.prepare_run(1)
    assert config.seed == run_seed(3, 1)
    # the reference: plain compile + fit with the run's seed
    reference = xb.fit(xb.compile(spec(16), seed=config.seed), data, validation_data=val,
                       epochs=2, batch_size=64, seed=config.seed, verbose=False)
    xb.fit(model, data, config, validation_data=val, verbose=False)
    recorded = exp.runs.query("run == 1")
    assert recorded.loss.tolist() == model.history.loss.tolist() == reference.history.loss.tolist()
    assert torch.equal(exp.best_model.parameters()["hidden.weight"],
                       reference.parameters()["hidden.weight"]) == (exp.best_run == 1)


def test_a_compiled_model_is_rebuilt_per_run_and_left_untouched(small):
    base = xb.compile(spec(8), optimizer="sgd", learning_rate=0.05, seed=0)
    before = base.parameters()["hidden.weight"].clone()
    exp = make(small, build=base, params={"learning_rate": [0.01, 0.1]}).run()
    assert torch.equal(base.parameters()["hidden.weight"], before) and base.history.empty
    assert set(exp.summary.state) == {"finished"}
    assert exp.best_model is not base and exp.best_model.optimizer == "sgd"


# ------------------------------------------------------------------ failures
def test_a_failing_run_is_recorded_and_the_experiment_goes_on(small):
    def fragile(params):
        if params["units"] == 5:
            raise RuntimeError("five units are unlucky")
        return spec(params["units"])

    exp = make(small, build=fragile, params={"units": [4, 5, 6]}).run()
    summary = exp.summary.set_index("run")
    assert summary.state.tolist() == ["finished", "failed", "finished"]
    assert "five units are unlucky" in summary.message[1]
    failed = exp.runs.query("run == 1")
    assert len(failed) == 1 and failed.epoch.isna().all()


def test_a_diverging_run_is_recorded_as_failed_not_hidden(small):
    exp = make(small, params={"units": [8], "optimizer": ["sgd"],
                              "learning_rate": [1e-2, 1e12]}, epochs=3).run()
    summary = exp.summary.set_index("learning_rate")
    assert summary.state[1e-2] == "finished"
    assert summary.state[1e12] == "failed" and summary.message[1e12]
    assert exp.best["learning_rate"] == 1e-2


# ------------------------------------------------------------------ background
def test_stop_mid_run_then_start_again_finishes_the_grid(small):
    exp = make(small, params={"units": [4, 8, 12]}, epochs=40)
    seen = threading.Event()
    live = []

    def listener(event, e):
        if event == "epoch" and not seen.is_set():
            live.append(e.runs)  # the running run's history, read from another thread
            seen.set()
    exp.add_listener(listener)
    assert exp.start() and not exp.start()
    assert seen.wait(60)
    exp.stop()
    assert exp.wait(60)
    assert live[0].state.eq("running").all() and len(live[0]) >= 1
    summary = exp.summary
    assert summary.state.tolist() == ["stopped"] and summary.epochs[0] < 40
    exp.remove_listener(listener)
    exp.start()
    assert exp.wait(120)
    assert exp.summary.state.tolist() == ["finished"] * 3
    assert exp.summary.epochs.tolist() == [40] * 3


def test_events_arrive_in_order(small):
    exp = make(small, params={"units": [4, 8]}, epochs=1)
    events = []
    exp.add_listener(lambda event, e: events.append(event))
    exp.run()
    assert events == ["start", "run_start", "epoch", "run_end", "run_start", "epoch",
                      "run_end", "end"]
    exp.run()  # nothing left to run
    assert events[-2:] == ["start", "end"]


# ------------------------------------------------------------------ files
def test_save_and_load_round_trip_without_pickle(small, tmp_path):
    exp = make(small, params={"units": [4, 8], "lr_schedule": [None, ("step", 1e-2, 1, 0.5)]},
               accuracy=True)
    exp.run()
    exp.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.exburn",
                                                          "experiment.json", "runs.csv"]
    again = xb.Experiment.load(tmp_path)
    cols = ["run", "units", "epoch", "loss", "val_loss", "accuracy", "lr", "state"]
    pd.testing.assert_frame_equal(again.runs[cols], exp.runs[cols])
    drop = ["lr_schedule"]
    pd.testing.assert_frame_equal(again.summary.drop(columns=drop),
                                  exp.summary.drop(columns=drop))
    assert again.best_run == exp.best_run and again.metric == "val_loss"
    assert torch.equal(again.best_model.parameters()["output.weight"],
                       exp.best_model.parameters()["output.weight"])
    assert isinstance(again, ExperimentResults) and not hasattr(again, "start")  # results only
    with pytest.raises(FileNotFoundError, match="no saved experiment"):
        xb.Experiment.load(tmp_path / "nowhere")


def test_load_returns_the_results_whole_and_saving_them_again_writes_the_same_files(
        small, tmp_path):
    exp = make(small, params={"units": [4, 8], "learning_rate": [1e-2, 1e12],
                              "optimizer": ["sgd"]}, accuracy=True).run()
    assert set(exp.summary.state) == {"finished", "failed"}  # the diverging runs fail
    exp.save(tmp_path / "a")
    again = xb.Experiment.load(tmp_path / "a")
    assert type(again) is ExperimentResults and exp.results is not again
    pd.testing.assert_frame_equal(again.summary, exp.summary)
    pd.testing.assert_frame_equal(again.runs.drop(columns="epoch"),
                                  exp.runs.drop(columns="epoch"), check_dtype=False)
    assert again.runs.epoch.tolist() == exp.runs.epoch.tolist()
    assert (again.best, again.best_run, again.metric, again.direction) == \
        (exp.best, exp.best_run, exp.metric, exp.direction)
    assert again.params == exp.params and again.search == "grid" and again.parallel is None
    assert again.get().params == exp.best and again.get(1).state == exp.results.get(1).state
    for run, history in exp.results.histories.items():
        pd.testing.assert_frame_equal(again.histories[run], history, check_dtype=False)
    assert torch.equal(again.best_model.parameters()["hidden.weight"],
                       exp.best_model.parameters()["hidden.weight"])
    again.save(tmp_path / "b")  # a loaded result saves as it was saved
    for name in ("experiment.json", "runs.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert ExperimentResults.load(tmp_path / "b").summary.equals(again.summary)


def test_optuna_missing_says_what_to_install(small, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"exburn_nb\[tune\]"):
        make(small, params={"units": [4]}, search="optuna", n_trials=1)


# ------------------------------------------------------------------ spaces
def test_space_ranges_draw_inside_their_bounds_and_refuse_bad_ones():
    import numpy as np

    rng = np.random.default_rng(0)
    lr = [xb.space.loguniform(1e-4, 1e-1).draw(rng) for _ in range(500)]
    assert min(lr) >= 1e-4 and max(lr) <= 1e-1
    assert 0.3 < np.mean(np.log10(lr) < -2.5) < 0.7  # log-uniform: half below the middle
    units = [xb.space.integers(4, 64, log=True).draw(rng) for _ in range(500)]
    assert set(units) <= set(range(4, 65)) and {4, 64} <= set(units)
    assert all(isinstance(u, int) for u in units)
    assert xb.space.integers(2, 4).values() == [2, 3, 4]
    assert xb.space.from_dict(xb.space.uniform(0, 1).to_dict()) == xb.space.uniform(0, 1)
    with pytest.raises(ValueError, match="low must be below high"):
        xb.space.uniform(1.0, 0.5)
    with pytest.raises(ValueError, match="a log range needs low > 0"):
        xb.space.loguniform(0.0, 1.0)
    with pytest.raises(ValueError, match="integers: low must be an integer"):
        xb.space.integers(1.5, 3)


def test_a_torch_module_is_copied_per_run_with_fresh_seeded_weights(small):
    from collections import OrderedDict

    from torch import nn

    module = nn.Sequential(OrderedDict(hidden=nn.Linear(64, 8), act=nn.ReLU(),
                                       output=nn.Linear(8, 10)))
    before = module.hidden.weight.detach().clone()
    exp = make(small, build=module, params={"learning_rate": [1e-3, 1e-2]}).run()
    assert torch.equal(module.hidden.weight, before)  # the caller's module is not trained
    assert set(exp.summary.state) == {"finished"}
    first, _ = exp.prepare_run(0)
    again, _ = exp.prepare_run(0)
    other, _ = exp.prepare_run(1)
    weights = [m.parameters()["hidden.weight"] for m in (first, again, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
