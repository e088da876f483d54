"""Generated bad inputs at every public entry point.

The contract: a ``ValueError`` or ``TypeError`` whose message names the argument, raised
before any training step, with the parameters, the optimizer state and the history
exactly as they were. (Non-finite data and ``fit(model, x, y)`` are checked elsewhere.)
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
from numbers import Real
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_persist import assert_unchanged, full_state
from torch_reference import classification_data, fit, mlp_spec

import exburn_nb as xb
from exburn_nb.core.losses import LOSSES
from exburn_nb.core.optim import OPTIMIZERS
from exburn_nb.train.steps import GRAD_METHODS

CASES = settings(max_examples=25, deadline=None)

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-2**70, 2**70), st.floats(),
    st.text(max_size=6), st.binary(max_size=3), st.lists(st.integers(-2, 5), max_size=3),
    st.tuples(st.text(max_size=3)),
    st.sampled_from([object(), {}, {"a": 1}, (1, 2), print, 1j, Path("x")]))


def real(v, low=0.0, strict=False) -> bool:
    return (not isinstance(v, bool) and isinstance(v, Real) and math.isfinite(v)
            and (v > low if strict else v >= low))


def integer(v, low) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def bad(valid) -> st.SearchStrategy:
    """Values from ANY that ``valid`` rejects."""
    def ok(v):
        try:
            return bool(valid(v))
        except Exception:  # noqa: BLE001 - an odd value is simply not valid
            return False
    return ANY.filter(lambda v: not ok(v))


@functools.cache
def saved_model() -> Path:
    """A trained model (optimizer state, history): what a rejected call must leave alone."""
    model = xb.compile(mlp_spec(), optimizer="adam", learning_rate=0.01, seed=0)
    fit(model, classification_data(n=16), epochs=1, batch_size=8)
    folder = Path(tempfile.mkdtemp(prefix="exburn-bad-"))
    atexit.register(shutil.rmtree, folder, True)
    return model.save(folder / "m.exburn")


def model() -> xb.Model:
    return xb.load(saved_model())


def rejected(call, argname: str, target: xb.Model | None = None) -> None:
    target = target if target is not None else model()
    before = full_state(target)
    with pytest.raises((ValueError, TypeError)) as info:
        call(target)
    assert argname in str(info.value), (argname, str(info.value))
    assert_unchanged(target, before)


X, Y = classification_data(n=12)


def wrong_x() -> st.SearchStrategy:
    shapes = st.lists(st.integers(0, 7), max_size=3).filter(
        lambda s: not (len(s) == 2 and s[1] == 6 and s[0] > 0))
    return st.one_of(shapes.map(torch.zeros), bad(lambda v: False).filter(
        lambda v: not isinstance(v, (list, tuple))))


def wrong_pairs() -> st.SearchStrategy:
    """(x, y) pairs that cannot train this 6 -> 3 classifier, and things that are no pair."""
    n = X.shape[0]
    return st.one_of(
        wrong_x().map(lambda x: (x, Y)),
        st.sampled_from([
            (X, Y[:-1]), (X, Y + 3), (X, Y - 5), (X, Y.float() + 0.5), (X, torch.zeros(n, 4)),
            (X, torch.ones(n, 3)), (X, -torch.eye(3)[Y]), (X, torch.zeros(n, 3, 1)),
            (X, torch.tensor(1)), (X, "labels"), (X, None), (X,), (X, Y, Y), X, "data",
        ]))


# ----------------------------------------------------------------- compile
COMPILE_ARGS = {
    "loss": lambda v: v in LOSSES,
    "optimizer": lambda v: v in OPTIMIZERS,
    "learning_rate": lambda v: real(v, strict=True),
    "device": lambda v: v in ("cpu", "auto"),
    "weight_decay": lambda v: real(v),
    "seed": lambda v: v is None or (integer(v, 0) and v < 2**64),
    "input_shape": lambda v: v is None or tuple(v) == (None, 6),
}


@pytest.mark.parametrize("argname", list(COMPILE_ARGS))
@CASES
@given(data=st.data())
def test_compile(argname, data):
    value = data.draw(bad(COMPILE_ARGS[argname]))
    with pytest.raises((ValueError, TypeError)) as info:
        xb.compile(mlp_spec(), **{argname: value})
    assert argname in str(info.value)


# ----------------------------------------------------------------- inference
@CASES
@given(x=wrong_x())
def test_forward_and_predict_x(x):
    rejected(lambda m: m.forward(x), "x")
    rejected(lambda m: m.predict(x), "x")


@CASES
@given(batch_size=bad(lambda v: integer(v, 1)))
def test_predict_batch_size(batch_size):
    rejected(lambda m: m.predict(X, batch_size=batch_size), "batch_size")


# ----------------------------------------------------------------- freezing and devices
def good_names(v) -> bool:
    layers = {"hidden", "output"}
    if isinstance(v, str):
        return v in layers
    return not isinstance(v, (bytes, str)) and all(
        isinstance(n, str) and n in layers for n in v)


@CASES
@given(names=bad(good_names))
def test_freeze_and_unfreeze(names):
    rejected(lambda m: m.freeze(names), "names")
    rejected(lambda m: m.unfreeze(names), "names")


@CASES
@given(device=bad(lambda v: v in ("cpu", "auto")))
def test_to_device(device):
    rejected(lambda m: m.to_device(device), "device")


# ----------------------------------------------------------------- steps
@CASES
@given(data=wrong_pairs())
def test_evaluate_data(data):
    rejected(lambda m: xb.evaluate(m, data), "data")


@CASES
@given(batch_size=bad(lambda v: integer(v, 1)))
def test_evaluate_batch_size(batch_size):
    rejected(lambda m: xb.evaluate(m, (X, Y), batch_size=batch_size), "batch_size")


CLIP = lambda v: v is None or real(v, strict=True)  # noqa: E731
STEP_ARGS = {"clip_norm": CLIP, "clip_value": CLIP,
             "grad_method": lambda v: v in GRAD_METHODS}


@pytest.mark.parametrize("argname", list(STEP_ARGS))
@CASES
@given(data=st.data())
def test_train_step_options(argname, data):
    value = data.draw(bad(STEP_ARGS[argname]))
    rejected(lambda m: xb.train_step(m, (X, Y), **{argname: value}), argname)


@CASES
@given(batch=wrong_pairs())
def test_train_step_and_compute_gradients_batch(batch):
    rejected(lambda m: xb.train_step(m, batch), "batch")
    rejected(lambda m: xb.compute_gradients(m, batch), "batch")


@CASES
@given(grad_method=bad(lambda v: v in GRAD_METHODS))
def test_compute_gradients_grad_method(grad_method):
    rejected(lambda m: xb.compute_gradients(m, (X, Y), grad_method=grad_method), "grad_method")


# ----------------------------------------------------------------- fit
def bad_schedules() -> st.SearchStrategy:
    tuples = st.sampled_from([
        ("step",), ("step", 1e-3, 0, 0.5), ("step", 1e-3, 2.5, 0.5), ("step", -1.0, 2, 0.5),
        ("exponential", 1e-3), ("exponential", 1e-3, -0.5), ("cosine", 0, 1e-5),
        ("cosine", 1e-3, -1.0), ("linear", 1e-3), ("cosine", "a", "b"), (),
        lambda: 0.1, lambda e: -1.0, lambda e: "fast", lambda e, f: 0.1,
    ])
    return st.one_of(tuples, bad(lambda v: v is None or callable(v)))


FIT_ARGS = {
    "epochs": bad(lambda v: integer(v, 0)),
    "batch_size": bad(lambda v: integer(v, 1)),
    "clip_norm": bad(CLIP),
    "clip_value": bad(CLIP),
    "accumulate_gradients": bad(lambda v: integer(v, 1)),
    "weight_decay": bad(lambda v: v is None or real(v)),
    "lr_schedule": bad_schedules(),
    "callbacks": st.one_of(
        bad(lambda v: isinstance(v, (list, tuple)) and all(callable(c) for c in v)),
        st.lists(bad(callable), min_size=1, max_size=2),
        st.just([xb.Callback])),
}


@pytest.mark.parametrize("argname", list(FIT_ARGS))
@CASES
@given(data=st.data())
def test_fit_options(argname, data):
    value = data.draw(FIT_ARGS[argname])
    rejected(lambda m: xb.fit(m, (X, Y), epochs=1, verbose=False, **{argname: value}),
             "lr_schedule" if argname == "lr_schedule" else argname)


@CASES
@given(data=wrong_pairs())
def test_fit_data_and_validation_data(data):
    rejected(lambda m: xb.fit(m, data, epochs=1, verbose=False), "data")
    rejected(lambda m: xb.fit(m, (X, Y), validation_data=data, epochs=1, verbose=False),
             "validation_data")
