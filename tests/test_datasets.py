"""The shipped data sets, and a real-data check: an MLP learns scikit-learn's digits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.core import datasets


def test_digits_shapes_types_and_split():
    (x, y), (tx, ty) = datasets.digits()
    assert x.shape == (1438, 64) and tx.shape == (359, 64)  # round(1797 * 0.2) = 359
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == set(range(10)) and set(ty.tolist()) <= set(range(10))
    # standardised with the training split's statistics
    assert x.mean(dim=0).abs().max() < 1e-4
    std = x.std(dim=0, unbiased=False)
    constant = std == 0  # pixels that are 0 in every training image stay 0
    assert ((std - 1).abs() < 1e-3).sum() + constant.sum() == 64
    assert torch.isfinite(x).all() and torch.isfinite(tx).all()


def test_digits_split_is_seeded_and_disjoint():
    (x1, y1), (tx1, _) = datasets.digits(seed=0)
    (x2, y2), _ = datasets.digits(seed=0)
    (x3, _), _ = datasets.digits(seed=1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    train_rows = {tuple(r) for r in x1.round(decimals=4).tolist()}
    overlap = sum(tuple(r) in train_rows for r in tx1.round(decimals=4).tolist())
    assert overlap < 10  # a few duplicate images exist in the raw data; rows are not shared


def test_digits_images_and_test_fraction():
    (x, _), (tx, _) = datasets.digits(images=True, test_fraction=0.5)
    assert x.shape[1:] == (1, 8, 8) and tx.shape[1:] == (1, 8, 8)
    assert x.shape[0] + tx.shape[0] == 1797 and tx.shape[0] == round(1797 * 0.5)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            datasets.digits(test_fraction=bad)


def test_breast_cancer_and_diabetes():
    (x, y), (tx, ty) = datasets.breast_cancer()
    assert x.shape[1] == 30 and x.shape[0] + tx.shape[0] == 569
    assert y.dtype == torch.float32 and set(y.unique().tolist()) == {0.0, 1.0}
    (x, y), (tx, ty) = datasets.diabetes()
    assert x.shape[1] == 10 and y.shape[1:] == (1,) and x.shape[0] + tx.shape[0] == 442
    both = torch.cat([y, ty])
    assert float(both.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(both.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_spirals():
    (x, y), (tx, ty) = datasets.spirals(n=300, classes=3, seed=2)
    assert x.shape[1] == 2 and x.shape[0] + tx.shape[0] == 300
    assert set(torch.cat([y, ty]).tolist()) == {0, 1, 2}
    assert (torch.cat([y, ty]).bincount() == 100).all()
    (x2, _), _ = datasets.spirals(n=300, classes=3, seed=2)
    assert torch.equal(x, x2)


def test_an_mlp_learns_digits_to_97_percent(digits):
    (x, y), (tx, ty) = digits
    spec = (xb.input("input", shape=(None, 64)).dense(128, activation="relu", name="hidden")
            .dense(10, name="output"))
    model = xb.compile(spec, loss="cross_entropy", optimizer="adam", learning_rate=1e-3,
                       seed=0)
    xb.fit(model, (x, y), epochs=30, batch_size=32, validation_data=(tx, ty), accuracy=True,
           verbose=False)
    loss, accuracy = xb.evaluate(model, (tx, ty), accuracy=True)
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}"
    assert model.history["val_accuracy"].iloc[-1] == pytest.approx(accuracy)
    assert model.history["loss"].iloc[-1] < model.history["loss"].iloc[0] / 5
    assert model.history["accuracy"].iloc[-1] > 0.99
    assert loss < 0.15
    assert (model.predict(tx).argmax(dim=1) == ty).float().mean().item() == pytest.approx(accuracy)


def test_digits_raw_ink_levels_for_pictures():
    (x, y), (tx, ty) = datasets.digits(standardize=False)
    (_, y_std), (_, ty_std) = datasets.digits()
    assert torch.equal(y, y_std) and torch.equal(ty, ty_std)  # the same split
    assert x.min() == 0 and x.max() == 16 and x.dtype == torch.float32


@pytest.mark.parametrize("name", list(datasets.TOY_SETS))
def test_generated_2d_sets_shapes_split_seed_and_balance(name):
    classes = 3 if name in ("circles", "blobs", "spirals") else 2
    (x, y), (tx, ty) = datasets.toy(name, n=301 if name != "spirals" else 300, classes=classes,
                                    noise=0.1, test_fraction=0.25, seed=4)
    n = x.shape[0] + tx.shape[0]
    assert x.shape[1] == tx.shape[1] == 2 and x.dtype == torch.float32 and y.dtype == torch.int64
    assert tx.shape[0] == round(n * 0.25)
    counts = torch.cat([y, ty]).bincount()
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    (x2, y2), _ = datasets.toy(name, n=301 if name != "spirals" else 300, classes=classes,
                               noise=0.1, test_fraction=0.25, seed=4)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    (x3, _), _ = datasets.toy(name, n=301 if name != "spirals" else 300, classes=classes,
                              noise=0.1, test_fraction=0.25, seed=5)
    assert not torch.equal(x, x3)
    assert x.abs().max() < 3  # in the playground's plane


def test_generated_sets_geometry_without_noise():
    (x, y), (tx, ty) = datasets.circles(n=300, classes=3, noise=0.0)
    x, y = torch.cat([x, tx]), torch.cat([y, ty])
    assert torch.allclose(x.norm(dim=1), (y + 1).float() / 3, atol=1e-5)
    (x, y), _ = datasets.xor(n=200, noise=0.0)
    assert torch.equal((x[:, 0] * x[:, 1] < 0).long(), y)
    (x, y), _ = datasets.blobs(n=400, classes=4, noise=0.0)
    centres = torch.tensor([[0.7, 0.0], [0.0, 0.7], [-0.7, 0.0], [0.0, -0.7]])
    assert torch.allclose(x, centres[y], atol=1e-6)
    (x, y), _ = datasets.moons(n=200, noise=0.0)
    centre = torch.where(y[:, None] == 0, torch.tensor([-0.5, -0.25]), torch.tensor([0.5, 0.25]))
    assert torch.allclose((x - centre).norm(dim=1), torch.ones(len(x)), atol=1e-5)
    # noise moves points off the noiseless shape by about its standard deviation
    (xn, _), _ = datasets.circles(n=2000, noise=0.1)
    (x0, _), _ = datasets.circles(n=2000, noise=0.0)
    assert float((xn - x0).std()) == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("call, match", [
    (lambda: datasets.moons(classes=3), "classes must be an integer 2"),
    (lambda: datasets.xor(classes=1), "classes"),
    (lambda: datasets.circles(classes=1), "classes must be an integer >= 2"),
    (lambda: datasets.blobs(n=5, classes=3), "n must be an integer >= 12"),
    (lambda: datasets.spirals(noise=-0.1), "noise must be a number >= 0"),
    (lambda: datasets.circles(n=100.0), "n must be"),
    (lambda: datasets.blobs(test_fraction=1.0), "test_fraction"),
    (lambda: datasets.toy("swiss"), "circles, moons, xor, blobs, spirals"),
])
def test_generated_sets_reject_bad_options(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------- bad arguments, every data set
ALL_SETS = {"digits": datasets.digits, "breast_cancer": datasets.breast_cancer,
            "diabetes": datasets.diabetes, **datasets.TOY_SETS}
BAD_SEEDS = st.one_of(st.text(max_size=3), st.integers(max_value=-1),
                      st.integers(min_value=2**64), st.floats(), st.booleans(),
                      st.lists(st.integers(0, 3), max_size=2))
BAD_FRACTIONS = st.one_of(st.floats().filter(lambda f: not 0 < f < 1), st.just(0), st.just(1),
                          st.booleans(), st.text(max_size=3).map(lambda t: t or "0.2"),
                          st.none(), st.just([0.2]))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(ALL_SETS)), seed=BAD_SEEDS)
def test_every_data_set_refuses_a_bad_seed_naming_it(name, seed):
    with pytest.raises(ValueError, match=r"^seed must be None or an integer in \[0, 2\*\*64 - 1\]"):
        ALL_SETS[name](seed=seed)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(ALL_SETS)), fraction=BAD_FRACTIONS)
def test_every_data_set_refuses_a_bad_test_fraction_naming_it(name, fraction):
    with pytest.raises(ValueError, match=r"^test_fraction must be a number in \(0, 1\)"):
        ALL_SETS[name](test_fraction=fraction)


@pytest.mark.parametrize("name, kw, sizes", [
    ("digits", dict(test_fraction=0.9999), "0 of the 1797 samples for training and 1797"),
    ("diabetes", dict(test_fraction=0.999), "0 of the 442 samples for training and 442"),
    ("moons", dict(n=8, test_fraction=0.95), "0 of the 8 samples for training and 8"),
])
def test_a_fraction_that_empties_the_training_split_is_refused(name, kw, sizes):
    with pytest.raises(ValueError, match=f"test_fraction={kw['test_fraction']} leaves {sizes}"):
        ALL_SETS[name](**kw)


def test_flags_and_names_are_checked():
    for flag in ("images", "standardize"):
        with pytest.raises(ValueError, match=f"{flag} must be True or False; got 'yes'"):
            datasets.digits(**{flag: "yes"})
    with pytest.raises(ValueError, match="data set name must be one of"):
        datasets.toy(["moons"])
    (x, _), (tx, _) = datasets.moons(n=8, test_fraction=0.05)  # a tiny share still tests one
    assert (len(x), len(tx)) == (7, 1)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(datasets.TOY_SETS)),
       option=st.sampled_from(["n", "classes", "noise"]),
       value=st.one_of(st.integers(-10**400, -1), st.integers(datasets.MAX_POINTS + 1, 10**400),
                       st.floats(allow_nan=True).filter(lambda f: not 0 <= f <= 1_000),
                       st.text(max_size=3), st.booleans(), st.none()))
def test_every_generated_set_refuses_a_bad_size_or_noise_naming_it(name, option, value):
    with pytest.raises(ValueError, match=f"^{option} must be"):
        datasets.TOY_SETS[name](**{option: value})
