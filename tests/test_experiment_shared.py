"""Studies shared by processes and machines: a total across workers (``total_trials``), the
storage advice, and two workers plus a watching experiment on a real PostgreSQL server
(the ``postgres`` fixture: our own server in a temporary folder) and on the journal file."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings

import pytest
import torch

import exburn_nb as xb
from exburn_nb.base.vocabulary import RunState
from exburn_nb.experiment.study import DIED, Tuner

optuna = pytest.importorskip("optuna")

SCRIPT = textwrap.dedent('''
    import os
    import torch
    import exburn_nb as xb

    g = torch.Generator().manual_seed(0)
    x = torch.randn(int(os.environ.get("ROWS", "64")), 4, generator=g)
    y = (x[:, 0] > 0).long()
    spec = xb.input("input", shape=(None, 4)).dense(2, name="output")
    experiment = xb.Experiment(
        spec, (x, y), params={"learning_rate": xb.space.loguniform(1e-3, 1e-1)},
        search="optuna", n_trials=1, epochs=int(os.environ.get("EPOCHS", "1")),
        metric="loss", batch_size=32, pruner=None, verbose=False)
''')
PARAMS = {"learning_rate": xb.space.loguniform(1e-3, 1e-1)}


def make(**kw):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    spec = xb.input("input", shape=(None, 4)).dense(2, name="output")
    options = dict(params=PARAMS, search="optuna", epochs=1, metric="loss", batch_size=32,
                   pruner=None, verbose=False)
    return xb.Experiment(spec, (x, (x[:, 0] > 0).long()), **{**options, **kw})


def journal(tmp_path, name="study"):
    return f"journal://{tmp_path / (name + '.log')}"


def script_experiment():
    namespace = {}
    exec(compile(SCRIPT, "search.py", "exec"), namespace)  # noqa: S102 - our own script
    return namespace["experiment"]


def start_worker(script, storage, study, *options, **env):
    command = [sys.executable, "-m", "exburn_nb.experiment", "worker", str(script),
               "--storage", storage, "--study", study, *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd(), **env})


def wait_for(condition, what, worker=None, timeout=120):
    """Poll ``condition`` until it is true (failing after ``timeout`` s, or when ``worker``
    exits)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker is None or worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


# --------------------------------------------------------------------------- total_trials
def test_total_trials_alone_runs_until_the_study_holds_that_many():
    exp = make(total_trials=3).run()
    assert exp.n_trials is None and exp.total is None
    assert exp.summary.run.tolist() == [0, 1, 2]
    assert exp.summary.state.eq("finished").all()


def test_a_failed_run_does_not_count_toward_total_trials():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    failures = []  # armed once the experiment is made (it builds once to check the space)

    def build(params):
        if failures == ["armed"]:
            failures.append("raised")
            raise RuntimeError("out of memory")  # the first run fails while it is built
        return xb.input("input", shape=(None, 4)).dense(2, name="output")

    exp = xb.Experiment(build, (x, (x[:, 0] > 0).long()), params=PARAMS, search="optuna",
                        total_trials=2, epochs=1, metric="loss", batch_size=32, pruner=None,
                        verbose=False)
    failures.append("armed")
    exp.run()
    assert exp.summary.state.tolist() == ["failed", "finished", "finished"]
    assert exp.total is None and exp.added_runs == [0, 1, 2]


def test_total_trials_counts_the_trials_of_other_processes(tmp_path):
    storage = journal(tmp_path)
    make(n_trials=2, storage=storage, study_name="s").run()
    joiner = make(total_trials=3, storage=storage, study_name="s").run()
    assert joiner.added_runs == [2]  # the other process's two trials count
    again = make(n_trials=5, total_trials=3, storage=storage, study_name="s").run()
    assert again.added == 0 and len(again.summary) == 3


def test_total_trials_waits_for_a_trial_running_elsewhere_instead_of_asking_more(tmp_path):
    storage = journal(tmp_path)
    elsewhere = Tuner(sampler=None, pruner=None, direction="minimize", seed=0, epochs=1,
                      storage=storage, study_name="s", heartbeat=1, grace_period=30)
    trial, _ = elsewhere.ask(PARAMS)  # open (and beating) in "another process"
    exp = make(total_trials=2, storage=storage, study_name="s")
    exp.start()
    try:
        wait_for(lambda: [r.state for r in exp.results.local_runs().values()]
                 == [RunState.FINISHED], "the experiment's own run")
        time.sleep(1.5)  # longer than it takes to read the study again
        assert exp.running and exp.added == 1  # waiting: the open trial may reach the total
        elsewhere.tell(trial, RunState.FINISHED, 0.5, {"state": "finished"})
        assert exp.wait(60)
    finally:
        exp.stop()
        exp.wait(60)
        elsewhere.heartbeat.close(trial)
    assert [t.state.name for t in exp.study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert exp.added_runs == [1]


def test_stop_ends_a_wait_for_trials_running_elsewhere(tmp_path):
    storage = journal(tmp_path)
    elsewhere = Tuner(sampler=None, pruner=None, direction="minimize", seed=0, epochs=1,
                      storage=storage, study_name="s", heartbeat=1, grace_period=30)
    trial, _ = elsewhere.ask(PARAMS)
    exp = make(total_trials=1, storage=storage, study_name="s")
    try:
        exp.start()
        time.sleep(0.5)
        assert exp.running
        exp.stop()
        assert exp.wait(30) and exp.added == 0
    finally:
        elsewhere.heartbeat.close(trial)


def test_total_trials_is_saved_and_loaded(tmp_path):
    exp = make(total_trials=1).run()
    exp.save(tmp_path / "saved")
    assert xb.Experiment.load(tmp_path / "saved").settings["total_trials"] == 1


@pytest.mark.parametrize("options, message", [
    (dict(total_trials=0), "total_trials must be an integer >= 1; got 0"),
    (dict(total_trials="4"), "total_trials must be an integer >= 1; got '4'"),
    (dict(total_trials=2.0), "total_trials must be an integer >= 1; got 2.0"),
    (dict(total_trials=4, search="random", n_trials=2),
     "total_trials is for search='optuna' (a study that processes share); got search='random'"),
    (dict(total_trials=None, n_trials=None), "n_trials must be an integer >= 1; got None"),
])
def test_bad_totals_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make(**options)


# --------------------------------------------------------------------------- storage advice
def test_sqlite_for_workers_sharing_a_total_warns_with_the_reason_and_the_choices(tmp_path):
    with pytest.warns(UserWarning, match="not made for parallel workers") as caught:
        make(total_trials=1, storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    text = str(caught[0].message)
    assert "database is locked" in text and "journal:///" in text and "postgresql://" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(total_trials=1, storage=journal(tmp_path), study_name="s")
        make(n_trials=1, storage=f"sqlite:///{tmp_path / 'one.db'}", study_name="s")


def test_a_worker_warns_about_sqlite_and_needs_a_count(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    worker = start_worker(script, f"sqlite:///{tmp_path / 's.db'}", "s", "--trials", "1")
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert "not made for parallel workers" in err
    assert json.loads(out.strip().splitlines()[-1])["runs"] == [0]
    worker = start_worker(script, journal(tmp_path), "s")
    _, err = worker.communicate(timeout=300)
    assert worker.returncode == 2 and "give --trials" in err and "--total-trials" in err


# --------------------------------------------------------------------------- test 11
@pytest.mark.parametrize("backend", ["postgres", "journal"])
def test_two_workers_and_a_watcher_share_a_study_and_survive_a_killed_worker(
        tmp_path, request, backend):
    """Worker A's trial is SIGKILLed mid-trial; worker B's heartbeat fails it after the
    grace period, B retries it and the study reaches its total; a third experiment watches
    and sees every trial once."""
    storage = request.getfixturevalue("postgres") if backend == "postgres" \
        else journal(tmp_path)
    study, total = f"s-{uuid.uuid4().hex[:8]}", 4
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    # a grace period well past the heartbeat, so a busy machine rarely fails a live trial
    watcher = script_experiment().replace(storage=storage, study_name=study, heartbeat=1,
                                          grace_period=6)  # creates the study (and schema)
    options = ("--total-trials", str(total), "--heartbeat", "1", "--grace-period", "6")
    seen: list[list[int]] = []

    def watch():
        runs = watcher.results.records()
        seen.append([r.run for r in runs])
        return runs

    slow = start_worker(script, storage, study, *options, EPOCHS="100000", ROWS="2000")
    fast = None
    try:
        wait_for(lambda: watch(), "worker A's first trial", slow)
        fast = start_worker(script, storage, study, *options)  # it starts while A trains
        wait_for(lambda: any(r.history_rows() for r in watch()), "worker A's first epoch",
                 slow)
        wait_for(lambda: any(r.state == RunState.FINISHED for r in watch()),
                 "worker B's first trial", fast)
        slow.send_signal(signal.SIGKILL)
        slow.communicate(timeout=60)
        out, err = fast.communicate(timeout=300)
    finally:
        for worker in (slow, fast):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert fast.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    watch()
    summary = watcher.summary
    trials = watcher.study.get_trials()
    story = "\n".join(f"trial {t.number}: {t.state.name} {t.params} " + str(
        {k: v for k, v in t.user_attrs.items() if k not in ("history", "params")})
        for t in trials) + f"\nworker B: {report}\n{err[-3000:]}"
    assert all(len(runs) == len(set(runs)) for runs in seen), story  # never a run twice
    assert summary.run.tolist() == list(range(len(trials))), story  # every trial, once
    assert summary.state[0] == "failed" and summary.message[0] == DIED, story  # by heartbeat
    # On a machine too busy for a live worker to beat within the grace period (seen with 15
    # processes waiting for 2 cores), a live trial is failed and retried too: still right.
    assert set(summary.state) == {"failed", "finished"}, story
    assert (summary.state == "finished").sum() == total, story  # the total, reached
    for failed in (t for t in trials if t.state.name == "FAIL"):  # each failed trial, retried
        assert any(t.params == failed.params for t in trials if t.number > failed.number), story
    assert report["runs"] == list(range(1, len(trials))), story  # B trained all but A's trial
