"""Ctrl-C while an experiment asks for, builds or groups its runs (before their training
loop takes Ctrl-C itself): no run stays "running", trials are told, and a second ``run()``
trains what is missing.

``raise KeyboardInterrupt`` is what Python's SIGINT handler does in the main thread.
"""

import pytest

import exburn_nb as xb

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def small(digits):
    (x, y), (tx, ty) = digits
    return (x[:200], y[:200]), (tx[:100], ty[:100])


def spec(units):
    return (xb.input("input", shape=(None, 64)).dense(units, activation="relu", name="hidden")
            .dense(10, name="output"))


class CtrlCInBuild:
    """A ``build`` that gets Ctrl-C on its ``at``-th call once armed."""

    def __init__(self, at):
        self.at, self.calls, self.armed = at, 0, False

    def __call__(self, params):
        self.calls += self.armed
        if self.armed and self.calls == self.at:
            raise KeyboardInterrupt
        return spec(params["units"])


def make(small, build, **kw):
    data, val = small
    return xb.Experiment(build, data, validation_data=val, epochs=2, batch_size=64, **kw)


def test_ctrl_c_while_building_a_grid_run_stops_it_and_run_trains_it_again(small):
    build = CtrlCInBuild(at=2)
    exp = make(small, build, params={"units": [4, 8, 16]})
    build.armed = True
    exp.run()  # Ctrl-C ends the experiment, as it does mid-training
    summary = exp.summary
    assert summary.state.tolist() == ["finished", "stopped"]
    assert "interrupted (Ctrl-C)" in summary.message[1] and summary.epochs[1] == 0
    assert exp.added == 1
    build.armed = False
    exp.run()
    assert exp.summary.state.eq("finished").all() and exp.summary.epochs.eq(2).all()
    assert exp.summary.run.tolist() == [0, 1, 2]


def test_ctrl_c_while_building_a_vmap_optuna_search_fails_every_asked_trial(small):
    build = CtrlCInBuild(at=3)
    exp = make(small, build, params={"units": [4, 8], "learning_rate": [1e-3, 1e-2]},
               search="optuna", n_trials=20, parallel="vmap", pruner=None)
    build.armed = True
    exp.run()
    states = [t.state.name for t in exp.study.get_trials()]
    assert states == ["FAIL"] * 20  # the 20 trials asked at once: none left RUNNING
    assert exp.summary.state.eq("stopped").all() and exp.added == 0
    build.armed = False
    exp.run()
    trials = exp.study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL"] * 20 + ["COMPLETE"] * 20
    assert exp.added == 20
    assert exp.summary.state.value_counts().to_dict() == {"stopped": 20, "finished": 20}


def test_ctrl_c_while_a_stacked_group_starts_stops_the_group(small):
    exp = make(small, lambda p: spec(p["units"]), params={"units": [8], "learning_rate":
                                                          [1e-3, 3e-3, 1e-2, 3e-2]},
               parallel="vmap")

    pressed = []

    def ctrl_c(event, experiment):  # Ctrl-C as the group's first run starts
        if event == "run_start" and not pressed:
            pressed.append(event)
            raise KeyboardInterrupt
    exp.add_listener(ctrl_c)
    exp.run()
    assert exp.summary.state.eq("stopped").all() and len(exp.summary) == 4
    exp.remove_listener(ctrl_c)
    exp.run()
    assert exp.summary.state.eq("finished").all() and exp.summary.epochs.eq(2).all()


class CtrlCInSampler(optuna.samplers.RandomSampler):
    """Ctrl-C while the third trial's params are drawn."""

    def sample_independent(self, study, trial, name, distribution):
        if trial.number == 2 and not getattr(self, "done", False):
            self.done = True
            raise KeyboardInterrupt
        return super().sample_independent(study, trial, name, distribution)


def test_ctrl_c_while_a_trial_is_asked_leaves_no_trial_running(small):
    exp = make(small, lambda p: spec(p["units"]), params={"units": [4, 8, 16]},
               search=CtrlCInSampler(seed=0), n_trials=4, parallel="vmap", pruner=None)
    exp.run()
    assert [t.state.name for t in exp.study.get_trials()] == ["FAIL"] * 3
    assert exp.summary.state.eq("stopped").all() and exp.added == 0
    exp.run()
    assert exp.added == 4 and exp.summary.state.tolist().count("finished") == 4
