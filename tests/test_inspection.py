"""The inspection numbers against direct computations: scikit-learn's confusion matrix and
scores, hand-computed norms and dead-ReLU shares, torch.autograd.gradcheck."""

import numpy as np
import pytest
import torch
from torch import nn

import exburn_nb as xb
from exburn_nb.train import inspection

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), (tx, ty) = digits
    spec = (xb.input("input", shape=(None, 64)).dense(16, activation="relu", name="hidden")
            .dense(10, name="output"))
    model = xb.compile(spec, learning_rate=1e-3, seed=0)
    xb.fit(model, (x, y), epochs=2, seed=0, verbose=False)
    return model, tx, ty


def test_confusion_and_scores_match_sklearn(trained):
    model, tx, ty = trained
    pred = model.predict(tx).argmax(dim=1)
    cm = inspection.confusion_matrix(ty, pred)
    assert np.array_equal(cm, sklearn_metrics.confusion_matrix(ty.numpy(), pred.numpy()))
    assert cm.sum() == len(ty) and cm[3, 5] == int(((ty == 3) & (pred == 5)).sum())
    scores = inspection.per_class_scores(cm)
    p, r, _, support = sklearn_metrics.precision_recall_fscore_support(
        ty.numpy(), pred.numpy(), zero_division=0)
    assert np.allclose(scores["precision"], p) and np.allclose(scores["recall"], r)
    assert scores["support"].tolist() == support.tolist()


def test_confusion_edge_cases():
    assert inspection.confusion_matrix([0, 0], [0, 0], num_classes=3).tolist() == [
        [2, 0, 0], [0, 0, 0], [0, 0, 0]]
    scores = inspection.per_class_scores(inspection.confusion_matrix([0, 1], [0, 0]))
    assert scores["precision"].tolist() == [0.5, 0.0]  # class 1 never predicted
    with pytest.raises(ValueError, match="num_classes must be at least 3"):
        inspection.confusion_matrix([2], [0], num_classes=2)
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length"):
        inspection.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="y_pred must be a 1-D sequence of class indices"):
        inspection.confusion_matrix([0], [0.5])


def test_probabilities_and_most_confidently_wrong(trained):
    model, tx, ty = trained
    probs = inspection.class_probabilities(model, tx)
    assert torch.allclose(probs, model.predict(tx).softmax(dim=1))
    wrong = inspection.most_confidently_wrong(probs, ty, k=5)
    conf, pred = probs.max(dim=1)
    mistakes = [(float(conf[i]), i) for i in range(len(ty)) if pred[i] != ty[i]]
    expected = [i for _, i in sorted(mistakes, key=lambda t: -t[0])[:5]]
    assert wrong["index"].tolist() == expected
    assert (wrong["true"] != wrong["predicted"]).all()
    assert wrong["confidence"].is_monotonic_decreasing


def test_binary_probabilities():
    spec = xb.input("input", shape=(None, 2)).dense(1, name="out")
    model = xb.compile(spec, loss="binary_cross_entropy", seed=0)
    x = torch.randn(6, 2)
    p = model.predict(x).sigmoid()
    assert torch.allclose(inspection.class_probabilities(model, x), torch.cat([1 - p, p], 1))
    with pytest.raises(ValueError, match="classifier"):
        inspection.class_probabilities(xb.compile(spec, loss="mse"), x)


def fixed_model():
    """2 -> 3 (relu) -> 2 with hand-set weights: unit 2 of the hidden layer never fires."""
    spec = (xb.input("input", shape=(None, 2)).dense(3, activation="relu", name="hidden")
            .dense(2, name="output"))
    model = xb.compile(spec, seed=0)
    with torch.no_grad():
        model.module.hidden.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model.module.hidden.bias.copy_(torch.tensor([0.0, 0.0, -10.0]))
        model.module.output.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]))
        model.module.output.bias.copy_(torch.tensor([0.5, 0.0]))
    return model


def test_layer_norms_by_hand():
    model = fixed_model()
    norms = inspection.layer_norms(model)
    assert norms["layer"].tolist() == ["hidden", "output"]
    assert norms["weight_norm"].tolist() == pytest.approx([np.sqrt(4 + 100), np.sqrt(1 + 4 + 9 + 1 + 0.25 + 0.25)])
    assert norms["grad_norm"].isna().all()
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    probe = inspection.ActivationProbe(model).attach()
    model.loss(model.module(x), y).backward()
    recorded = {k: v.clone() for k, v in probe.gradients.items()}
    probe.detach()
    assert probe.gradients == {} and model.module.hidden.weight._backward_hooks in (None, {})
    # by hand: h = relu([1, 2, -13]) = [1, 2, 0]; logits = [1 + 4 + 0.5, -2] = [5.5, -2]
    p = torch.tensor([5.5, -2.0]).softmax(0)
    d_logits = p - torch.tensor([1.0, 0.0])
    d_w2 = torch.outer(d_logits, torch.tensor([1.0, 2.0, 0.0]))
    d_h = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]).T @ d_logits * torch.tensor([1.0, 1, 0])
    d_w1 = torch.outer(d_h, x[0])
    hand_out = (d_w2.square().sum() + d_logits.square().sum()).sqrt()
    hand_hidden = (d_w1.square().sum() + d_h.square().sum()).sqrt()
    norms = inspection.layer_norms(model)
    assert norms["grad_norm"].tolist() == pytest.approx([float(hand_hidden), float(hand_out)], rel=1e-5)
    model.torch_optimizer.zero_grad(set_to_none=True)  # as the loop does after each step
    assert inspection.layer_norms(model)["grad_norm"].isna().all()
    from_probe = inspection.layer_norms(model, recorded)["grad_norm"].tolist()
    assert from_probe == pytest.approx([float(hand_hidden), float(hand_out)], rel=1e-5)


def test_dead_relu_share_and_histograms_by_hand():
    model = fixed_model()
    x = torch.tensor([[1.0, -1.0], [-2.0, 3.0], [0.5, 0.5], [-1.0, -1.0]])
    probe = inspection.ActivationProbe(model)
    assert not probe.attached and not model.module.hidden._forward_hooks
    with probe:
        model.predict(x)  # inference is not recorded
        assert probe.relu_outputs == {}
        probe.record(x)
        # unit 0 fires for rows 0 and 2, unit 1 for rows 1 and 2, unit 2 never: 1/3 dead
        assert probe.dead_relu_share() == {"hidden": pytest.approx(1 / 3)}
        probe.record(x[3:])  # only [-1, -1]: every unit is 0 there
        assert probe.dead_relu_share() == {"hidden": 1.0}
        hists = probe.histograms(bins=4)
        out = model.module.output(torch.relu(model.module.hidden(x[3:])))
        counts, edges = np.histogram(out.detach().numpy().ravel(), bins=4)
        assert np.array_equal(hists["output"][0], counts) and np.allclose(hists["output"][1], edges)
        assert hists["hidden"][0].sum() == 3
    assert not probe.attached and not model.module.hidden._forward_hooks
    assert not model.module.hidden.act._forward_hooks and probe.outputs == {}


def test_probe_records_training_batches(digits):
    (x, y), _ = digits
    model = xb.compile(
        xb.input("input", shape=(None, 64)).dense(8, activation="relu", name="h").dense(10, name="o"),
        seed=0)
    with inspection.ActivationProbe(model) as probe:
        xb.fit(model, (x[:64], y[:64]), epochs=1, batch_size=16, verbose=False)
        assert probe.outputs["h"].shape == (16, 8) and probe.outputs["o"].shape == (16, 10)
        share = probe.dead_relu_share()["h"]
        assert share == float((probe.relu_outputs["h"] > 0).sum(0).eq(0).float().mean())


class WrongTanh(torch.autograd.Function):
    """tanh whose backward forgets the chain rule's 1 - tanh^2 factor."""

    @staticmethod
    def forward(ctx, x):
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Broken(nn.Module):
    def __init__(self, wrong):
        super().__init__()
        self.first, self.second = nn.Linear(3, 4), nn.Linear(4, 2)
        self.wrong = wrong

    def forward(self, x):
        h = self.first(x)
        return self.second(WrongTanh.apply(h) if self.wrong else torch.tanh(h))


@pytest.mark.parametrize("wrong", [False, True])
def test_gradient_check_agrees_with_torch_gradcheck(wrong):
    torch.manual_seed(0)
    model = xb.compile(Broken(wrong), loss="cross_entropy", input_shape=(None, 3))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    frame = inspection.gradient_check(model, (x, y))
    assert frame["layer"].tolist() == ["first", "second"]
    assert frame["parameters"].tolist() == [16, 10]
    net = Broken(wrong).double()
    net.load_state_dict(model.module.state_dict())
    w1 = net.first.weight.detach().clone().requires_grad_()

    def loss_of_first_weight(w):
        h = nn.functional.linear(x.double(), w, net.first.bias.detach())
        h = WrongTanh.apply(h) if wrong else torch.tanh(h)
        return nn.functional.cross_entropy(net.second(h), y)

    torch_ok = torch.autograd.gradcheck(loss_of_first_weight, (w1,), raise_exception=False)
    assert torch_ok is not wrong
    first = frame.set_index("layer")["relative_error"]
    if wrong:
        assert first["first"] > 1e-2  # the wrong backward is caught in the first layer
    else:
        assert first["first"] < 1e-4
    assert first["second"] < 1e-4  # the second layer's gradient never goes through tanh


def test_network_inspector_samples_as_asked_and_tells_its_listeners(digits, mlp):
    (x, y), _ = digits
    model = mlp()
    off = inspection.NetworkInspector(model)
    xb.fit(model, (x[:128], y[:128]), epochs=1, batch_size=32, callbacks=[off], verbose=False)
    assert off.norms.empty and not off.probe.attached  # off: no hooks, nothing sampled
    asked, heard = [], []

    def every_other() -> bool:
        asked.append(1)
        return len(asked) % 2 == 0

    inspector = inspection.NetworkInspector(model, enabled=True, sample_when=every_other)
    inspector.add_listener(heard.append)
    xb.fit(model, (x[:128], y[:128]), epochs=1, batch_size=32, callbacks=[inspector],
           verbose=False)
    assert len(asked) == 4 and heard == [6, 8]  # steps 5-8 of the model: every other one
    assert inspector.norms["step"].unique().tolist() == [6, 8]
    assert set(inspector.norms["layer"]) == set(inspector.param_layers)
    assert set(inspector.histograms) == set(inspector.layers)
    direct = inspection.layer_norms(model)
    last = inspector.norms[inspector.norms["step"] == 8].set_index("layer")
    assert last["weight_norm"].to_numpy() == pytest.approx(direct["weight_norm"].to_numpy())
    inspector.enabled = False
    assert not inspector.probe.attached and not inspector.probe.outputs
