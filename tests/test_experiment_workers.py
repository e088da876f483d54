"""Workers of one study (``python -m exburn_nb.experiment worker``): started together, killed
mid-trial, or given a script that names its experiment twice."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import exburn_nb as xb
from exburn_nb.base.vocabulary import RunState
from exburn_nb.experiment.study import Tuner, creation_lock, make_storage

optuna = pytest.importorskip("optuna")

SCRIPT = textwrap.dedent('''
    import os
    import torch
    import exburn_nb as xb

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    spec = xb.input("input", shape=(None, 4)).dense(2, name="output")
    experiment = xb.Experiment(
        spec, (x, y), params={"learning_rate": xb.space.loguniform(1e-3, 1e-1)},
        search="optuna", n_trials=1, epochs=int(os.environ.get("EPOCHS", "1")),
        metric="loss", batch_size=32, pruner=None)
''')


def storage_url(tmp_path, backend, name="study"):
    return (f"sqlite:///{tmp_path / (name + '.db')}" if backend == "sqlite"
            else f"journal://{tmp_path / (name + '.log')}")


def start_worker(script, storage, trials, *options, epochs=1):
    command = [sys.executable, "-m", "exburn_nb.experiment", "worker", str(script),
               "--storage", storage, "--study", "s", "--trials", str(trials), *options]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "EPOCHS": str(epochs)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(workers):
    """Each worker's (exit code, last stdout line, stderr)."""
    results = []
    try:
        for w in workers:
            out, err = w.communicate(timeout=300)
            results.append((w.returncode, (out.strip().splitlines() or [""])[-1], err))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    return results


def study_trials(storage):
    """The trials of study "s" ([] before a worker created it)."""
    try:
        with creation_lock(storage):  # not while a worker creates the schema
            return optuna.load_study(study_name="s", storage=make_storage(storage)).get_trials()
    except KeyError:  # no such study yet
        return []


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "search.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_three_workers_started_together_on_a_new_storage_all_finish(tmp_path, script,
                                                                    backend):
    for round_ in range(3):  # the schema race showed in 4 of 6 tries before the lock
        storage = storage_url(tmp_path, backend, f"round{round_}")
        results = finish([start_worker(script, storage, 2) for _ in range(3)])
        for code, last, err in results:
            assert code == 0, err
            assert json.loads(last)["runs_added"] == 2
        trials = study_trials(storage)
        assert sorted(t.number for t in trials) == list(range(6))  # every trial once
        assert all(t.state.name == "COMPLETE" for t in trials)


def test_a_worker_counts_an_experiment_bound_to_two_names_once(tmp_path, script):
    script.write_text(SCRIPT + "same = experiment\n")
    storage = storage_url(tmp_path, "journal")
    [(code, last, err)] = finish([start_worker(script, storage, 1)])
    assert code == 0, err
    assert json.loads(last) == {"study": "s", "runs_added": 1, "runs": [0], "runs_in_study": 1}


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_a_worker_killed_mid_trial_has_its_trial_failed_and_retried(tmp_path, script,
                                                                   backend):
    storage = storage_url(tmp_path, backend)
    worker = start_worker(script, storage, 3, "--heartbeat", "1", "--grace-period", "2",
                          epochs=100_000)  # its first trial would run for a long time
    try:
        for _ in range(300):  # until its first trial has trained an epoch (at most ~1 min)
            trials = study_trials(storage)
            if trials and trials[0].user_attrs.get("history"):
                break
            assert worker.poll() is None, worker.communicate()[1]
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.communicate()
    assert [t.state.name for t in study_trials(storage)] == ["RUNNING"]
    time.sleep(3)  # past the grace period: the next process of the study fails the trial
    namespace = {}
    exec(compile(SCRIPT, "search.py", "exec"), namespace)  # noqa: S102 - our own script
    survivor = namespace["experiment"].replace(storage=storage, study_name="s", n_trials=2,
                                               heartbeat=1, grace_period=2)
    survivor.run()
    trials = study_trials(storage)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == trials[0].params  # the dead trial was retried
    summary = survivor.summary
    assert summary.state.tolist() == ["failed", "finished", "finished"]
    assert "no heartbeat" in summary.message[0]
    survivor.save(tmp_path / "saved")
    assert xb.Experiment.load(tmp_path / "saved").summary.state.tolist()[0] == "failed"


def test_a_live_process_fails_a_dead_processs_trial_within_the_grace_period(tmp_path):
    storage = storage_url(tmp_path, "journal")
    options = dict(sampler=None, pruner=None, direction="minimize", seed=0, epochs=1,
                   storage=storage, study_name="s", heartbeat=1, grace_period=2)
    dead, live = Tuner(**options), Tuner(**options)
    lost, _ = dead.ask({"units": [4, 8]})
    dead.heartbeat.close(lost)  # its process died: no more beats, never told
    mine, _ = live.ask({"units": [4, 8]})  # open: the live process beats and watches
    state = live.study.get_trials()[0].state.name
    for _ in range(300):  # the live process's heartbeat thread fails it (at most ~1 minute)
        state = live.study.get_trials()[0].state.name
        if state != "RUNNING":
            break
        time.sleep(0.2)
    assert state == "FAIL"
    assert live.study.get_trials()[1].state.name == "RUNNING"  # its own trial is kept
    live.tell(mine, RunState.FINISHED, 0.5, {})
    waiting = live.study.get_trials()[2]  # the retry of the dead trial, first to be asked
    assert waiting.state.name == "WAITING" and waiting.params == lost.params


@pytest.mark.parametrize("heartbeat, grace, message", [
    (0, None, "heartbeat must be None or a finite number of seconds > 0; got 0"),
    ("60", None, "heartbeat must be None or a finite number"),
    (10, 10, "grace_period must be longer than heartbeat"),
    (None, 5, "grace_period needs a heartbeat"),
    (10, float("nan"), "grace_period must be a finite number > 0"),
])
def test_bad_heartbeat_options_are_refused(heartbeat, grace, message):
    spec = xb.input("input", shape=(None, 4)).dense(2)
    data = (torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape(message)):
        xb.Experiment(spec, data, params={"learning_rate": [0.1]}, search="optuna",
                      n_trials=1, metric="loss", storage=None, heartbeat=heartbeat,
                      grace_period=grace)


def test_a_trial_failed_by_another_process_stays_failed_when_its_own_ends(tmp_path):
    options = dict(sampler=None, pruner=None, direction="minimize", seed=0, epochs=1,
                   storage=storage_url(tmp_path, "journal"), study_name="s")
    mine, other = Tuner(**options), Tuner(**options)
    trial, _ = mine.ask({"units": [4, 8]})
    other.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # its beat was late
    mine.tell(trial, RunState.FINISHED, 0.5, {"state": "finished"})  # no error
    assert mine.study.get_trials()[0].state.name == "FAIL"
