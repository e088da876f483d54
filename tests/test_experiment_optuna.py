"""xb.Experiment with Optuna: in memory, SQLite, pruning, and workers in other processes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import exburn_nb as xb

optuna = pytest.importorskip("optuna")

SCRIPT = textwrap.dedent('''
    import torch
    import exburn_nb as xb

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    y = (x[:, 0] > 0).long()
    spec = xb.input("input", shape=(None, 8)).dense(2, name="output")
    experiment = xb.Experiment(
        spec, (x, y), validation_data=(x, y),
        params={"learning_rate": xb.space.loguniform(1e-3, 1e-1), "batch_size": [32, 64]},
        search="optuna", n_trials=1, epochs=2, pruner=None)

    if __name__ == "__main__":
        experiment.run()
''')


@pytest.fixture(scope="module")
def small(digits):
    (x, y), (tx, ty) = digits
    return (x[:300], y[:300]), (tx[:150], ty[:150])


def spec(units=16):
    return (xb.input("input", shape=(None, 64)).dense(units, activation="relu", name="hidden")
            .dense(10, name="output"))


def make(small, **kw):
    data, val = small
    options = dict(validation_data=val, epochs=2, batch_size=64, search="optuna")
    options.update(kw)
    return xb.Experiment(lambda p: spec(p["units"]), data, **options)


def test_in_memory_study_runs_n_trials_as_runs(small):
    exp = make(small, n_trials=4, params={"learning_rate": xb.space.loguniform(1e-3, 1e-1),
                                          "units": xb.space.integers(4, 32),
                                          "optimizer": ["adam", "sgd"]})
    exp.run()
    summary = exp.summary
    assert summary.run.tolist() == [0, 1, 2, 3]
    assert set(summary.state) <= {"finished", "pruned"}
    trials = exp.study.get_trials()
    assert len(trials) == 4
    for trial, (_, row) in zip(trials, summary.iterrows(), strict=True):
        assert trial.params["learning_rate"] == row.learning_rate
        assert trial.user_attrs["seed"] == row.seed
        assert list(trial.intermediate_values.values()) == \
            exp.runs.query(f"run == {trial.number}").val_loss.tolist()
    if (summary.state == "finished").all():
        assert exp.study.best_value == pytest.approx(summary.best_val_loss.min())
        assert exp.best == {k: exp.study.best_params[k] for k in exp.best}
    assert set(exp.importances()) <= {"learning_rate", "units", "optimizer"}


def test_a_sampler_object_and_non_primitive_choices(small):
    exp = make(small, n_trials=2, search=optuna.samplers.RandomSampler(seed=1),
               params={"units": [8], "lr_schedule": [None, ("step", 1e-2, 1, 0.5)]})
    exp.run()
    assert set(exp.summary.lr_schedule.map(repr)) <= {"None", "('step', 0.01, 1, 0.5)"}
    assert isinstance(exp.study.sampler, optuna.samplers.RandomSampler)


def test_pruning_stops_a_diverging_trial_before_its_last_epoch(small):
    exp = make(small, n_trials=5, epochs=6, params={"units": [16], "optimizer": ["sgd"],
                                                    "learning_rate": [0.05, 3.0]},
               pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    for lr in (0.05, 0.05, 0.05, 3.0, 0.05):
        exp.study.enqueue_trial({"units": 16, "optimizer": "sgd", "learning_rate": lr})
    exp.run()
    summary = exp.summary.set_index("run")
    assert summary.state[3] == "pruned"
    assert summary.epochs[3] < 6
    assert summary.state[[0, 1, 2]].eq("finished").all()
    partial = exp.runs.query("run == 3")
    assert len(partial) == summary.epochs[3] >= 1 and partial.state.eq(summary.state[3]).all()
    assert exp.study.trials[3].state.name == "PRUNED"


def test_a_pruned_trial_is_recorded_as_pruned(small):
    exp = make(small, n_trials=4, epochs=5, params={"units": [16], "learning_rate": [1e-2, 1e-5]},
               pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for lr in (1e-2, 1e-2, 1e-2, 1e-5):
        exp.study.enqueue_trial({"units": 16, "learning_rate": lr})
    exp.run()
    summary = exp.summary.set_index("run")
    assert summary.state[3] == "pruned" and 1 <= summary.epochs[3] < 5
    assert exp.study.trials[3].state.name == "PRUNED"


def test_sqlite_study_is_seen_by_another_experiment(small, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    params = {"learning_rate": xb.space.loguniform(1e-3, 1e-1), "units": [8, 16]}
    first = make(small, n_trials=3, params=params, storage=storage, study_name="s", pruner=None)
    first.run()
    second = make(small, n_trials=1, params=params, storage=storage, study_name="s", pruner=None)
    seen = second.runs  # before running: all of the first's trials, curves included
    cols = ["run", "learning_rate", "units", "epoch", "loss", "val_loss", "state"]
    assert seen[cols].equals(first.runs[cols])
    second.run()
    assert second.summary.run.tolist() == [0, 1, 2, 3]
    assert len(first.summary) == 4  # the first sees the second's trial too


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_two_worker_processes_share_one_study(tmp_path, backend):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    storage = (f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite"
               else f"journal://{tmp_path / 'study.log'}")
    namespace = {}
    exec(compile(SCRIPT, str(script), "exec"), namespace)  # noqa: S102 - our own script
    watcher = namespace["experiment"].replace(storage=storage, study_name="shared")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "exburn_nb.experiment", "worker", str(script),
               "--storage", storage, "--study", "shared", "--trials", "3"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for _ in range(2)]
    outputs = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            raise
        assert worker.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["runs_added"] for o in outputs] == [3, 3]
    summary = watcher.summary
    assert summary.run.tolist() == list(range(6))  # no duplicate, no lost trial
    assert summary.state.eq("finished").all() and summary.epochs.eq(2).all()
    assert len(set(summary.seed)) == 6
    runs = watcher.runs
    assert runs.groupby("run").size().eq(2).all() and runs.val_loss.notna().all()


def test_pruner_choices_and_bad_ones(small):
    params = {"units": [4]}
    hyperband = make(small, n_trials=1, params=params, pruner="hyperband")
    assert isinstance(hyperband.study.pruner, optuna.pruners.HyperbandPruner)
    assert isinstance(make(small, n_trials=1, params=params, pruner=None).study.pruner,
                      optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="pruner must be 'median', 'hyperband'"):
        make(small, n_trials=1, params=params, pruner="early")
    with pytest.raises(ValueError, match="storage is for search='optuna'"):
        make(small, params=params, search="grid", storage="sqlite:///x.db")


def test_worker_refuses_a_script_without_an_experiment(tmp_path):
    script = tmp_path / "empty.py"
    script.write_text("x = 1\n")
    done = subprocess.run([sys.executable, "-m", "exburn_nb.experiment", "worker", str(script),
                           "--storage", "sqlite:///x.db", "--study", "s", "--trials", "1"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 2 and "must define exactly one xb.Experiment" in done.stderr
