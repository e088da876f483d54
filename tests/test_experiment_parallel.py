"""xb.Experiment(parallel="vmap"): runs planned into stacked groups, equal to sequential runs."""

import gc
import time
import weakref

import numpy as np
import pytest
import torch

import exburn_nb as xb

GRID = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2], "weight_decay": [0.0, 1e-3]}
CURVES = ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]


@pytest.fixture(scope="module")
def small(digits):
    (x, y), (tx, ty) = digits
    return (x[:300], y[:300]), (tx[:150], ty[:150])


def spec():
    return (xb.input("input", shape=(None, 64)).dense(16, activation="relu", name="hidden")
            .dense(10, name="output"))


def make(small, **kw):
    data, val = small
    options = dict(params=GRID, validation_data=val, epochs=3, batch_size=32, accuracy=True,
                   seed=7)
    options.update(kw)
    return xb.Experiment(options.pop("build", spec()), data, **options)


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=rtol, atol=1e-7)


def test_vmap_grid_equals_the_sequential_experiment(small):
    stacked = make(small, parallel="vmap").run()
    alone = make(small).run()
    assert list(stacked.summary.state) == ["finished"] * 8
    assert stacked.parallel == "vmap" and alone.parallel is None
    report = "\n".join(stacked.parallel_report)
    assert "stacked group 1: members [0, 1, 2, 3, 4, 5, 6, 7] (8 at once" in report
    assert "alone" not in report and alone.parallel_report == []
    a, b = stacked.runs, alone.runs
    assert list(a.run) == list(b.run) and list(a.epoch) == list(b.epoch) == [1, 2, 3] * 8
    for column in CURVES:
        close(a[column], b[column])
    assert stacked.best_run == alone.best_run
    assert stacked.best == alone.best
    for name, value in alone.best_model.module.state_dict().items():
        close(stacked.best_model.module.state_dict()[name], value)


def test_events_follow_every_run_of_a_group(small):
    exp = make(small, parallel="vmap", params={"learning_rate": [1e-3, 1e-2]}, epochs=2)
    events = []
    exp.add_listener(lambda event, e: events.append(event))
    exp.run()
    assert events == ["start", "run_start", "run_start", *["epoch"] * 4, "run_end", "run_end",
                      "end"]


def test_a_diverging_member_fails_while_the_others_finish(small):
    exp = make(small, parallel="vmap", optimizer="sgd", metric="loss",
                params={"learning_rate": [1e-2, 1e4, 3e-2]}).run()
    summary = exp.summary
    assert list(summary.state) == ["finished", "failed", "finished"]
    assert summary.message[1].startswith("epoch 1, batch ") and "refused" in summary.message[1]
    assert list(summary.epochs) == [3, 1, 3]
    assert exp.best_run in (0, 2)
    # the others are untouched by the failure: equal to their sequential runs
    alone = make(small, optimizer="sgd", metric="loss",
                 params={"learning_rate": [1e-2, 1e4, 3e-2]}).run()
    for run in (0, 2):
        close(exp.runs[exp.runs.run == run].loss, alone.runs[alone.runs.run == run].loss)


def test_optuna_trials_train_together_and_a_diverging_one_is_pruned(small):
    optuna = pytest.importorskip("optuna")
    exp = make(small, parallel="vmap", optimizer="sgd", metric="loss", n_trials=8,
               params={"learning_rate": [1e-2, 3.0]}, search="optuna",
               pruner=optuna.pruners.ThresholdPruner(upper=100.0)).run()
    summary = exp.summary
    assert "8 at once" in exp.parallel_report[0]  # eight trials open at once
    diverging = summary.learning_rate == 3.0
    assert 0 < diverging.sum() < 8  # the seeded sampler drew both values
    assert set(summary.state[diverging]) == {"pruned"} and set(summary.epochs[diverging]) == {1}
    assert set(summary.state[~diverging]) == {"finished"}
    assert set(summary.epochs[~diverging]) == {3}
    states = {t.number: t.state.name for t in exp.study.trials}
    assert states == {r: "PRUNED" if lr == 3.0 else "COMPLETE"
                      for r, lr in zip(summary.run, summary.learning_rate, strict=True)}
    assert all(len(t.intermediate_values) >= 1 for t in exp.study.trials)


def test_stop_mid_group_leaves_runs_stopped_and_run_completes_them(small):
    exp = make(small, parallel="vmap")

    def stop_after_first_epoch(event, e):
        if event == "epoch":
            e.stop()
    exp.add_listener(stop_after_first_epoch)
    exp.run()
    exp.remove_listener(stop_after_first_epoch)
    assert list(exp.summary.state) == ["stopped"] * 8
    assert set(exp.summary.epochs) == {1}
    exp.run()
    assert list(exp.summary.state) == ["finished"] * 8
    assert list(exp.summary.epochs) == [3] * 8
    close(exp.runs.loss, make(small).run().runs.loss)  # retrained from scratch, same seeds


def test_runs_that_cannot_share_a_step_train_alone(small):
    exp = make(small, parallel="vmap",
               params={"batch_size": [32, 64], "learning_rate": [1e-2, 3e-2]}).run()
    assert list(exp.summary.state) == ["finished"] * 4
    report = exp.parallel_report[0]
    assert "members [0, 1]" in report and "members [2, 3]" in report  # grouped by batch size
    lone = make(small, parallel="vmap", params={"batch_size": [32, 64]}).run()
    assert list(lone.summary.state) == ["finished"] * 2
    assert "member 0 runs alone: no other member shares" in lone.parallel_report[0]
    assert "member 1 runs alone" in lone.parallel_report[0]
    close(lone.runs.loss, make(small, params={"batch_size": [32, 64]}).run().runs.loss)


def test_a_torch_module_build_trains_alone_with_auto(small):
    module = torch.nn.Sequential(torch.nn.Linear(64, 10))
    exp = make(small, parallel="auto", params={"learning_rate": [1e-2, 3e-2]},
               build=xb.compile(module, input_shape=(None, 64))).run()
    assert list(exp.summary.state) == ["finished"] * 2
    assert exp.parallel_report[0].count("runs alone") == 2


def test_loaders_auto_falls_back_and_vmap_refuses(small):
    (x, y), val = small
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    with pytest.raises(ValueError, match="parallel='vmap'.*DataLoader"):
        xb.Experiment(spec(), loader, params=GRID, parallel="vmap", metric="loss")
    exp = xb.Experiment(spec(), loader, params={"learning_rate": [1e-2, 3e-2]}, epochs=1,
                        parallel="auto", metric="loss").run()
    assert list(exp.summary.state) == ["finished"] * 2 and exp.parallel_report == []


@pytest.mark.parametrize("bad", ["pmap", True, 1, "VMAP"])
def test_a_bad_parallel_value_is_refused(small, bad):
    with pytest.raises(ValueError, match=r"parallel must be None, 'vmap' or 'auto'; got"):
        make(small, parallel=bad)


def test_save_and_load_keep_the_parallel_setting_and_report(small, tmp_path):
    exp = make(small, parallel="vmap", params={"learning_rate": [1e-3, 1e-2]}, epochs=1).run()
    back = xb.Experiment.load(exp.save(tmp_path / "exp"))
    assert back.parallel == "vmap" and back.parallel_report == exp.parallel_report
    assert list(back.summary.state) == ["finished"] * 2


def test_a_run_that_cannot_be_built_fails_alone_and_the_others_stack(small):
    def build(params):
        if params["units"] == 3:
            raise ValueError("no network of 3 units")
        return (xb.input("input", shape=(None, 64)).dense(params["units"], activation="relu")
                .dense(10))
    exp = make(small, parallel="vmap", build=build, epochs=1,
               params={"units": [16, 3], "learning_rate": [1e-2, 3e-2]}).run()
    assert list(exp.summary.state) == ["finished", "finished", "failed", "failed"]
    assert exp.summary.message[2] == "ValueError: no network of 3 units"
    report = exp.parallel_report[0]
    assert "members [0, 1] (2 at once" in report
    assert "member 2 runs alone: it cannot be built (ValueError: no network of 3 units)" in report


def test_run_comparison_follows_a_stacked_group_live_and_stops_it(small):
    pytest.importorskip("ipywidgets")
    from exburn_nb.widgets import RunComparison

    exp = make(small, params={"learning_rate": [1e-3, 1e-2, 3e-2]}, epochs=400,
               parallel="vmap")
    view = RunComparison(exp)
    view.start_button.click()
    together, deadline = False, time.monotonic() + 120
    while not together and exp.running and time.monotonic() < deadline:
        frame = view.runs_frame  # what the widget shows: every run running, with epochs
        together = (not frame.empty and set(frame.state) == {"running"}
                    and frame.run.nunique() == 3 and frame.epoch.notna().all())
        time.sleep(0.01)
    view.stop_button.click()
    assert view.wait(120) and view.wait_drawn()
    assert together
    assert set(view.summary_frame.state) == {"stopped"} and len(view.summary_frame) == 3
    assert "3 runs (3 stopped)" in view.status.value
    assert "stacked group 1: members [0, 1, 2]" in view.status.tooltip
    view.close()


# ------------------------------------------------------------------ one execution path
def execute(small, stacked, lrs, on_epoch_end=None, build_fails=()):
    """Train runs of ``lrs`` through one Execution: one group of all (stacked) or one group
    per run (each through a Runner); runs numbered in ``build_fails`` cannot be built."""
    from exburn_nb.experiment import Run, run_seed
    from exburn_nb.experiment.execution import Execution
    from exburn_nb.experiment.params import ParamSpace

    data, val = small
    space = ParamSpace(spec(), {"learning_rate": lrs}, epochs=3, batch_size=32,
                       optimizer="sgd")
    runs = [Run(k, {"learning_rate": lr}, run_seed(0, k)) for k, lr in enumerate(lrs)]
    ended = []
    execution = Execution(data, val, on_run_end=ended.append,
                          on_epoch_end=lambda run, m: on_epoch_end(execution, run, m)
                          if on_epoch_end else False)
    built = [r for r in runs if r.run not in build_fails]
    for run in runs:
        if run.run in build_fails:
            execution.fail(run, ValueError("no network for this run"))
    prepared = [space.prepare(r.params, r.seed) for r in built]
    groups = [built] if stacked else [[r] for r in built]
    for group in groups:
        execution.train(group, [prepared[built.index(r)] for r in group])
    assert sorted(r.run for r in ended) == [r.run for r in runs]  # every run ends once
    return runs


@pytest.mark.parametrize("case", ["prune", "non-finite", "stop", "build"])
def test_a_sequential_and_a_stacked_group_end_in_the_same_states(small, case):
    from exburn_nb.base.vocabulary import RunState

    lrs = [1e-2, 3e-2, 1e4 if case == "non-finite" else 1e-3]
    hooks = {"prune": lambda ex, run, m: run.run == 1,  # pruned after its first epoch
             "stop": lambda ex, run, m: ex.stop()}  # after the first epoch of any run
    expected = {"prune": ["finished", "pruned", "finished"],
                "non-finite": ["finished", "finished", "failed"],
                "stop": ["stopped"] * 3,
                "build": ["finished", "failed", "finished"]}[case]
    ends = []
    for stacked in (False, True):
        runs = execute(small, stacked, lrs, hooks.get(case),
                       build_fails=(1,) if case == "build" else ())
        assert all(isinstance(r.state, RunState) for r in runs)
        ends.append([(r.state, r.message, len(r.rows)) for r in runs])
        assert [r.state for r in runs] == expected, (stacked, ends[-1])
    sequential, together = ends
    if case == "stop":  # the stacked group stops at once; later sequential runs never start
        assert [n for _, _, n in together] == [1, 1, 1]
        assert [n for _, _, n in sequential] == [1, 0, 0]
    else:
        assert [(s, n) for s, _, n in sequential] == [(s, n) for s, _, n in together]
    for (state, message, _), (_, other, _) in zip(sequential, together, strict=True):
        if state == "failed":  # the same failure, said the same way
            assert message and (message == other or "refused" in message and "refused" in other)


def test_the_experiment_fails_a_run_that_cannot_be_built_the_same_way_in_both_modes(small):
    def build(params):
        if params["units"] == 3:
            raise ValueError("no network of 3 units")
        return (xb.input("input", shape=(None, 64)).dense(params["units"], activation="relu")
                .dense(10))
    params = {"units": [16, 3], "learning_rate": [1e-2, 3e-2]}
    alone = make(small, build=build, epochs=1, params=params).run().summary
    together = make(small, build=build, epochs=1, params=params, parallel="vmap").run().summary
    for column in ("state", "message", "epochs"):
        assert alone[column].tolist() == together[column].tolist()


def test_a_memory_budget_sizes_the_stacked_groups_and_trained_groups_are_let_go(small):
    from exburn_nb.sweep.stacked import member_bytes

    one = member_bytes(xb.compile(spec()), 32)
    exp = make(small, parallel="vmap", memory_budget=int(2.5 * one))  # 8 runs, 2 at once
    models, alive = [], []

    def watch(event, experiment):  # at each run's start: how many earlier models live on
        if event == "run_start":
            alive.append(sum(m() is not None for m in models))
            models.append(weakref.ref(experiment.current.model))
    exp.add_listener(watch)
    gc.collect()
    gc.disable()  # freed as their runs end, not by a garbage collection
    try:
        exp.run()
    finally:
        gc.enable()
    groups = [line for line in exp.parallel_report[0].splitlines()
              if line.startswith("stacked group")]
    assert [g.split("(")[1].split(";")[0] for g in groups] == ["2 at once"] * 4
    assert exp.summary.state.eq("finished").all()
    assert alive[6] <= 1  # the first three groups' models are gone, but for the best one
    assert exp.memory_budget == int(2.5 * one)
    assert make(small, parallel="vmap").memory_budget == xb.sweep.planning.MEMORY_BUDGET
    with pytest.raises(ValueError, match="memory_budget must be 'auto', None or a number"):
        make(small, parallel="vmap", memory_budget="2GB")
