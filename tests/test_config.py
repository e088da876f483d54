"""FitConfig: one validated, JSON-ready value for every fit option, taken by fit, Trainer,
Runner and the dashboard; schedules with a position; seeds that make a run repeatable."""

import json

import pytest
import torch
from torch_reference import classification_data, fit, mlp_spec

import exburn_nb as xb
from exburn_nb.core.config import FitConfig
from exburn_nb.core.optim import Schedule
from exburn_nb.train.runner import Runner


def test_defaults_are_the_guides():
    cfg = FitConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.shuffle, cfg.accumulate_gradients) == (10, 32, True, 1)
    assert cfg.lr_schedule is None and cfg.seed is None and cfg.terminate_on_nan


@pytest.mark.parametrize("options, message", [
    ({"epochs": -1}, "epochs must be an integer >= 0; got -1"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1; got 2.5"),
    ({"accumulate_gradients": 0}, "accumulate_gradients must be an integer >= 1"),
    ({"clip_norm": 0}, "clip_norm must be None or a finite number > 0; got 0"),
    ({"clip_value": float("nan")}, "clip_value must be None or a finite number > 0"),
    ({"weight_decay": -1e-3}, "weight_decay must be None or a finite number >= 0"),
    ({"shuffle": "yes"}, "shuffle must be True or False; got 'yes'"),
    ({"precision": "fp16"}, "precision must be one of fp32, bf16; got 'fp16'"),
    ({"seed": -1}, r"seed must be None or an integer in \[0, 2\*\*64 - 1\]; got -1"),
    ({"seed": 2**64}, "seed must be None or an integer in"),
    ({"seed": "x"}, "seed must be None or an integer in"),
    ({"lr_schedule": ("linear", 1e-3)}, "lr_schedule must be None, a callable"),
    ({"lr_schedule": ("step", 1e-3, 0, 0.5)}, "lr_schedule step_size must be an integer >= 1"),
])
def test_every_check_names_the_option_and_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        FitConfig(**options)


def test_unknown_options_are_refused_with_a_suggestion():
    with pytest.raises(TypeError, match="unknown fit option 'epoch'; did you mean 'epochs'"):
        FitConfig.from_options(epoch=3)
    model = xb.compile(mlp_spec(), seed=0)
    with pytest.raises(TypeError, match="unknown fit option 'bach_size'"):
        fit(model, classification_data(), bach_size=4)


def test_json_round_trip_and_replace():
    cfg = FitConfig(epochs=3, batch_size=8, lr_schedule=("cosine", 0.1, 1e-4), clip_norm=1,
                    seed=7, accuracy=True)
    data = json.loads(json.dumps(cfg.to_dict(), allow_nan=False))
    assert FitConfig.from_dict(data) == cfg
    assert cfg.replace(epochs=5) == FitConfig(**{**cfg.__dict__, "epochs": 5})
    with pytest.raises(ValueError, match="batch_size"):
        cfg.replace(batch_size=0)


def test_a_callable_schedule_must_be_given_again_to_rebuild():
    def halve(epoch):
        return 0.1 / 2 ** epoch

    data = FitConfig(lr_schedule=halve).to_dict()
    assert data["lr_schedule"] == {"callable": halve.__qualname__}
    with pytest.raises(ValueError, match="pass it again: lr_schedule="):
        FitConfig.from_dict(data)
    assert FitConfig.from_dict(data, lr_schedule=halve).lr_schedule is halve


def test_fit_takes_a_config_and_options_override_it():
    x, y = classification_data(n=48)
    a = xb.compile(mlp_spec(), seed=0)
    b = xb.compile(mlp_spec(), seed=0)
    cfg = FitConfig(epochs=5, batch_size=16, shuffle=False)
    xb.fit(a, (x, y), cfg, epochs=2, verbose=False)
    fit(b, (x, y), epochs=2, batch_size=16, shuffle=False)
    for p, q in zip(a.parameters().values(), b.parameters().values(), strict=True):
        assert torch.equal(p, q)
    assert a.runs.loc[0, "epochs"] == 2 and a.runs.loc[0, "batch_size"] == 16


def test_fit_model_x_y_says_to_pass_a_pair():
    x, y = classification_data(n=16)
    model = xb.compile(mlp_spec(), seed=0)
    with pytest.raises(ValueError, match=r"call xb.fit\(model, \(x, y\), ...\), not "
                                         r"xb.fit\(model, x, y\)"):
        xb.fit(model, x, y)


def test_a_spec_passed_as_a_model_says_compile_first():
    spec = mlp_spec()
    x, y = classification_data(n=16)
    with pytest.raises(ValueError, match=r"compile"):
        xb.fit(spec, (x, y))
    with pytest.raises(ValueError, match=r"compile the spec first"):
        xb.evaluate(spec, (x, y))


def test_runner_takes_a_config():
    x, y = classification_data(n=32)
    runner = Runner(xb.compile(mlp_spec(), seed=0), (x, y), FitConfig(epochs=2, batch_size=8))
    runner.start()
    assert runner.wait(30) and runner.state == "finished"
    assert runner.model.epochs_trained == 2 and len(runner.model.batch_history) == 8


# ----------------------------------------------------------------- schedules
@pytest.mark.parametrize("spec", [("step", 0.1, 2, 0.5), ("exponential", 0.1, 0.9),
                                  ("cosine", 0.1, 1e-3)])
def test_a_schedule_keeps_its_position_and_length_through_its_state(spec):
    one = Schedule(spec, epochs=6)
    lrs = []
    for _ in range(3):
        lrs.append(one.lr)
        one.advance()
    other = Schedule(spec, epochs=99)  # a resumed run: the saved length wins
    other.load_state_dict(json.loads(json.dumps(one.state_dict())))
    for _ in range(3):
        lrs.append(other.lr)
        other.advance()
    reference = Schedule(spec, epochs=6)
    assert lrs == [reference(e) for e in range(6)]
    with pytest.raises(ValueError, match="schedule state position"):
        other.load_state_dict({"position": "3", "t_max": 6})


# ----------------------------------------------------------------- seeds
def dropout_spec():
    return (xb.input("input", shape=(None, 6)).dense(16, activation="relu", name="hidden")
            .dropout(0.3).dense(3, name="output"))


def test_the_same_seed_gives_the_same_run_and_another_seed_another():
    x, y = classification_data(n=64)

    def run(seed):
        model = xb.compile(dropout_spec(), seed=0)
        torch.manual_seed(1234 + (seed or 0))  # global state must not matter with a seed
        fit(model, (x, y), epochs=3, batch_size=8, seed=seed)
        return model

    a, b, c = run(5), run(5), run(6)
    for p, q in zip(a.parameters().values(), b.parameters().values(), strict=True):
        assert torch.equal(p, q)
    assert a.batch_history["loss"].tolist() == b.batch_history["loss"].tolist()
    assert not torch.equal(a.parameters()["hidden.weight"], c.parameters()["hidden.weight"])
    assert a.runs.loc[0, "seed"] == 5
