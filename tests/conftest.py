"""Shared fixtures: small real data (scikit-learn's digits) and small models."""

import threading

import pytest
import torch

import exburn_nb as xb


@pytest.fixture(scope="session")
def digits():
    """``(x, y), (tx, ty)`` from scikit-learn's digits, standardised."""
    return xb.datasets.digits()


@pytest.fixture
def mlp():
    """A factory for a small seeded digits MLP."""
    def make(optimizer="adam", learning_rate=1e-3, **kw):
        spec = (xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden")
                .dense(10, name="output"))
        return xb.compile(spec, optimizer=optimizer, learning_rate=learning_rate, seed=0, **kw)
    return make


@pytest.fixture(autouse=True)
def no_leftover_training_threads():
    """Every test must leave no training thread running."""
    yield
    alive = [t for t in threading.enumerate() if t.name == "exburn-fit"]
    for t in alive:
        t.join(10)
    assert not [t for t in alive if t.is_alive()], "a training thread outlived its test"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
