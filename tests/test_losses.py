"""The three losses and accuracy, checked against torch.nn.functional."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_reference import classification_data, fit, mlp_spec, reference_net, regression_data

import exburn_nb as xb
from exburn_nb.core.losses import Loss

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def logits_and_labels(draw, scale=30.0):
    n, c = draw(st.integers(1, 12)), draw(st.integers(2, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    s = draw(st.floats(0.01, scale))
    logits = torch.randn(n, c, generator=g) * s
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, labels


# ----------------------------------------------------------------- cross-entropy
@SETTINGS
@given(logits_and_labels())
def test_cross_entropy_with_integer_targets_matches_torch(pair):
    logits, labels = pair
    torch.testing.assert_close(Loss("cross_entropy")(logits, labels),
                               F.cross_entropy(logits, labels))


@SETTINGS
@given(logits_and_labels())
def test_cross_entropy_with_one_hot_targets_matches_integer_targets(pair):
    logits, labels = pair
    one_hot = F.one_hot(labels, logits.shape[1]).float()
    loss = Loss("cross_entropy")
    torch.testing.assert_close(loss(logits, one_hot), F.cross_entropy(logits, labels))
    assert int(loss.correct(logits, one_hot)) == int(loss.correct(logits, labels))


@SETTINGS
@given(logits_and_labels(scale=2.0))
def test_cross_entropy_on_softmax_outputs_takes_them_as_probabilities(pair):
    logits, labels = pair
    loss = Loss("cross_entropy", output_activation="softmax")
    assert loss.from_probs
    probs = logits.softmax(dim=1)
    torch.testing.assert_close(loss(probs, labels), F.nll_loss(probs.log(), labels))
    # the same number as on the logits (in float64, where softmax does not saturate)
    logits = logits.double()
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(loss(logits.softmax(dim=1), labels), expected)
    one_hot = F.one_hot(labels, logits.shape[1]).double()
    torch.testing.assert_close(loss(logits.softmax(dim=1), one_hot), expected)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 3e4, -3e4]])
    labels = torch.tensor([1, 2])
    value = Loss("cross_entropy")(logits, labels)
    assert math.isfinite(float(value))
    torch.testing.assert_close(value, F.cross_entropy(logits, labels))


def test_cross_entropy_of_uniform_logits_is_log_classes():
    assert float(Loss("cross_entropy")(torch.zeros(3, 5), torch.tensor([0, 4, 2]))) == \
        pytest.approx(math.log(5))


# ----------------------------------------------------------------- mse and bce
@SETTINGS
@given(st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31 - 1),
       st.floats(0.01, 100.0))
def test_mse_matches_torch(n, k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    out, target = torch.randn(n, k, generator=g) * scale, torch.randn(n, k, generator=g)
    torch.testing.assert_close(Loss("mse")(out, target), F.mse_loss(out, target))
    assert float(Loss("mse")(target, target)) == 0.0


@SETTINGS
@given(st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31 - 1),
       st.floats(0.01, 50.0))
def test_binary_cross_entropy_with_logits_matches_torch(n, k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * scale
    target = torch.randint(0, 2, (n, k), generator=g).float()
    loss = Loss("binary_cross_entropy")
    assert not loss.from_probs
    torch.testing.assert_close(loss(logits, target),
                               F.binary_cross_entropy_with_logits(logits, target))


@SETTINGS
@given(st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31 - 1),
       st.floats(0.01, 5.0))
def test_binary_cross_entropy_on_sigmoid_outputs_matches_torch(n, k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * scale
    target = torch.randint(0, 2, (n, k), generator=g).float()
    loss = Loss("binary_cross_entropy", output_activation="sigmoid")
    assert loss.from_probs
    probs = logits.sigmoid()
    torch.testing.assert_close(loss(probs, target), F.binary_cross_entropy(probs, target))
    # the same number as on the logits (in float64, where sigmoid does not saturate)
    torch.testing.assert_close(loss(logits.double().sigmoid(), target.double()),
                               F.binary_cross_entropy_with_logits(logits.double(),
                                                                  target.double()))


def test_softmax_means_probabilities_only_for_cross_entropy():
    assert not Loss("binary_cross_entropy", output_activation="softmax").from_probs
    assert not Loss("cross_entropy", output_activation="sigmoid").from_probs
    assert not Loss("mse", output_activation="sigmoid").from_probs


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="loss must be one of"):
        Loss("hinge")


# ----------------------------------------------------------------- accuracy
def test_correct_counts_argmax_hits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    assert int(Loss("cross_entropy").correct(logits, torch.tensor([0, 1, 1, 0]))) == 2


def test_binary_accuracy_thresholds_logits_at_zero_and_probabilities_at_half():
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    logits = torch.tensor([[0.3], [-2.0], [-0.1], [0.2]])
    assert float(Loss("binary_cross_entropy").correct(logits, target)) == 2
    probs = logits.sigmoid()
    assert float(Loss("binary_cross_entropy", "sigmoid").correct(probs, target)) == 2
    two = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(Loss("binary_cross_entropy").correct(torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
                                                       two)) == pytest.approx(1.5)


# ----------------------------------------------------------------- through a model
def test_evaluate_matches_torch_for_each_loss_and_output():
    x, labels = classification_data(n=40)
    cases = [
        ("cross_entropy", None, labels, lambda out, y: F.cross_entropy(out, y)),
        ("cross_entropy", None, F.one_hot(labels, 3).float(), F.cross_entropy),
        ("cross_entropy", "softmax", labels, lambda p, y: F.nll_loss(p.log(), y)),
        ("mse", None, regression_data(n=40, n_out=3)[1], F.mse_loss),
        ("binary_cross_entropy", None, (labels == 1).float().unsqueeze(1).repeat(1, 3),
         F.binary_cross_entropy_with_logits),
        ("binary_cross_entropy", "sigmoid", (labels == 1).float().unsqueeze(1).repeat(1, 3),
         F.binary_cross_entropy),
    ]
    for name, activation, y, reference in cases:
        model = xb.compile(mlp_spec(out_activation=activation), loss=name, seed=0)
        out = reference_net(model)(x)
        assert xb.evaluate(model, (x, y)) == pytest.approx(reference(out, y).item(), rel=1e-5), \
            (name, activation)


def test_softmax_output_model_trains_like_the_logits_model():
    """A softmax output with cross-entropy is handled as probabilities: the gradients are
    those of cross-entropy on the logits, so training follows the same path."""
    x, y = classification_data()
    logits_model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.5, seed=0)
    softmax_model = xb.compile(mlp_spec(out_activation="softmax"), optimizer="sgd",
                               learning_rate=0.5, seed=0)
    for model in (logits_model, softmax_model):
        fit(model, (x, y), epochs=3, batch_size=16, shuffle=False)
    for a, b in zip(logits_model.parameters().values(), softmax_model.parameters().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(logits_model.history["loss"].tolist()),
                               torch.tensor(softmax_model.history["loss"].tolist()))


def test_evaluate_accuracy_matches_the_predictions():
    x, y = classification_data(n=60)
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, (x, y), epochs=3)
    loss, acc = xb.evaluate(model, (x, y), accuracy=True)
    expected = (model.predict(x).argmax(dim=1) == y).float().mean().item()
    assert acc == pytest.approx(expected)
    assert loss == xb.evaluate(model, (x, y))


def test_accuracy_with_mse_is_an_error():
    model = xb.compile(mlp_spec(n_out=1), loss="mse")
    data = regression_data()
    with pytest.raises(ValueError, match="accuracy=True needs a classification loss"):
        fit(model, data, epochs=1, accuracy=True)
    with pytest.raises(ValueError, match="accuracy=True"):
        xb.evaluate(model, data, accuracy=True)
    assert model.history.empty


# ----------------------------------------------------------------- targets
def test_targets_are_checked_and_converted():
    ce = Loss("cross_entropy")
    assert ce.prepare_targets(torch.tensor([0.0, 2.0]), (None, 3)).dtype == torch.long
    with pytest.raises(ValueError, match="not whole numbers"):
        ce.prepare_targets(torch.tensor([0.5, 1.0]), (None, 3))
    with pytest.raises(ValueError, match=r"label -1, outside \[0, 3\)"):
        ce.prepare_targets(torch.tensor([0, -1]), (None, 3))
    with pytest.raises(ValueError, match="one-hot rows"):
        ce.prepare_targets(torch.zeros(2, 4), (None, 3))
    with pytest.raises(ValueError, match="batch dimension"):
        ce.prepare_targets(torch.tensor(1), (None, 3))
    mse = Loss("mse")
    assert mse.prepare_targets(torch.tensor([1, 2]), (None, 1)).shape == (2, 1)
    with pytest.raises(ValueError, match="shaped like the output"):
        mse.prepare_targets(torch.zeros(2, 2), (None, 3))
    bce = Loss("binary_cross_entropy")
    with pytest.raises(ValueError, match="0.0/1.0 targets"):
        bce.prepare_targets(torch.tensor([[0.0], [2.0]]), (None, 1))


def test_cross_entropy_rows_must_be_probabilities():
    loss = Loss("cross_entropy")
    with pytest.raises(ValueError, match="one-hot or class probabilities.*use loss='mse'"):
        loss.prepare_targets(torch.randn(4, 3), (None, 3))
    soft = torch.tensor([[0.9, 0.05, 0.05], [0.0, 1.0, 0.0]])
    assert torch.equal(loss.prepare_targets(soft, (None, 3)), soft)
