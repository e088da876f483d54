"""NetworkPanels, LRFinderButton and GradCheck in-process: hooks only while shown, the
drawn numbers against direct computations."""

import numpy as np
import pytest
import torch

import exburn_nb as xb
from exburn_nb.train import inspection
from exburn_nb.widgets import GradCheck, LRFinderButton, NetworkPanels, TrainingDashboard


def hooks(model):
    count = sum(len(m._forward_hooks) for m in model.module.modules())
    return count + sum(len(p._backward_hooks or {}) for p in model.module.parameters())


def test_panels_off_attach_nothing_and_record_nothing(digits, mlp):
    (x, y), _ = digits
    model = mlp()
    panels = NetworkPanels(model)
    assert not panels.enabled and hooks(model) == 0 and panels.box.layout.display == "none"
    xb.fit(model, (x[:128], y[:128]), epochs=1, callbacks=[panels.inspector], verbose=False)
    assert panels.norms.empty and panels.dead.empty and hooks(model) == 0


def test_panels_on_sample_norms_dead_share_and_histograms(digits, mlp):
    (x, y), _ = digits
    model = mlp()
    panels = NetworkPanels(model, enabled=True, max_updates_per_s=1e9)  # sample every batch
    assert hooks(model) > 0 and panels.box.layout.display is None and panels.toggle.value
    xb.fit(model, (x[:128], y[:128]), epochs=1, batch_size=32, callbacks=[panels.inspector], verbose=False)
    norms = panels.norms
    assert norms["step"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4] and set(norms["layer"]) == {"hidden", "output"}
    last = norms[norms["step"] == 4].set_index("layer")
    w = model.module.hidden.weight.detach().double()
    b = model.module.hidden.bias.detach().double()
    assert last.loc["hidden", "weight_norm"] == pytest.approx(float((w.square().sum() + b.square().sum()).sqrt()))
    # the gradient of the last batch, recomputed at the weights before its step is not
    # available; check against the probe's own record instead, and that it is finite
    grads = panels.probe.gradients
    hand = float((grads["hidden.weight"].double().square().sum() + grads["hidden.bias"].double().square().sum()).sqrt())
    assert last.loc["hidden", "grad_norm"] == pytest.approx(hand) and hand > 0
    relu = panels.probe.relu_outputs["hidden"]
    assert panels.dead["dead_share"].iloc[-1] == pytest.approx(float((relu > 0).sum(0).eq(0).float().mean()))
    fig = panels.norm_figure
    assert len(fig.data) == 4 and np.allclose(np.asarray(fig.data[0].y), norms[norms["layer"] == "hidden"]["weight_norm"])
    counts, _ = np.histogram(panels.probe.outputs["output"].numpy().ravel(), bins=30)
    assert np.array_equal(np.asarray(panels.hist_figure.data[1].y), counts)
    panels.toggle.value = False  # closing the panel removes the hooks
    assert hooks(model) == 0 and not panels.enabled


def test_panels_through_a_dashboard_runner(digits, mlp):
    (x, y), _ = digits
    dash = TrainingDashboard(mlp(), (x[:256], y[:256]), epochs=2, batch_size=64)
    panels = NetworkPanels(dash.model)
    dash.runner.add_callback(panels.inspector)
    panels.enabled = True
    assert dash.start() and dash.wait(60)
    assert not panels.norms.empty  # at least the end-of-run sample
    assert panels.norms["step"].max() == 8


def test_lr_finder_button_sets_the_dashboard_slider(digits, mlp):
    (x, y), _ = digits
    dash = TrainingDashboard(mlp(), (x, y), epochs=1)
    finder = LRFinderButton(dash, num_iter=60)
    before = {k: v.clone() for k, v in dash.model.module.state_dict().items()}
    finder.button.click()
    frame, lr = xb.lr_find(dash.model, (x, y), num_iter=60)
    assert finder.suggestion == lr and finder.frame.equals(frame)
    assert dash.learning_rate.value == pytest.approx(lr, rel=1e-6)
    assert np.allclose(np.asarray(finder.figure.data[1].y), frame["smoothed_loss"])
    assert finder.figure_box.layout.display is None
    assert all(torch.equal(before[k], v) for k, v in dash.model.module.state_dict().items())


def test_lr_finder_button_on_a_trained_model_sets_the_slider_to_a_useful_rate(digits, mlp):
    """On a trained model the button suggested 1e-8 and the slider clamped it to 1e-5; now
    the suggestion is a rate to keep training at and the slider says exactly that rate."""
    (x, y), _ = digits
    model = mlp()
    xb.fit(model, (x, y), epochs=30, batch_size=32, seed=0, verbose=False)
    dash = TrainingDashboard(model, (x, y), epochs=1)
    finder = LRFinderButton(dash)
    assert finder.run() == finder.suggestion and finder.suggestion > 1e-4
    slider = dash.learning_rate
    assert slider.value == finder.suggestion
    assert 10 ** slider.min <= finder.suggestion <= 10 ** slider.max
    assert f"{finder.suggestion:.3g}" in finder.label.value


def test_gradcheck_widget_shows_the_per_layer_errors():
    torch.manual_seed(0)
    spec = (xb.input("input", shape=(None, 3)).dense(4, activation="tanh", name="hidden")
            .dense(2, name="output"))
    model = xb.compile(spec, seed=0)
    batch = (torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0]))
    view = GradCheck(model, batch)
    direct = inspection.gradient_check(model, batch)
    assert view.errors.drop(columns="relative_error").equals(direct.drop(columns="relative_error"))
    assert list(view.figure.data[0].x) == ["hidden", "output"]
    assert (view.errors["relative_error"] < 1e-4).all()
    assert np.allclose(np.asarray(view.figure.data[0].y), view.errors["relative_error"].clip(lower=1e-16))
    auto = xb.compute_gradients(model, batch)
    assert view.errors["autograd_norm"].iloc[0] == pytest.approx(
        float(torch.cat([auto["hidden.weight"].reshape(-1), auto["hidden.bias"]]).norm()), rel=1e-6)
    with pytest.raises(ValueError, match="method must be"):
        GradCheck(model, batch, method="autograd")


def test_empty_panels_say_what_will_appear_until_the_first_sample(digits, mlp):
    """Before Start each panel shows the hint (not bare axes); the first sample removes it."""
    (x, y), _ = digits
    model = mlp()
    panels = NetworkPanels(model, enabled=True, max_updates_per_s=1e9)
    figures = (panels.norm_figure, panels.dead_figure, panels.hist_figure)
    for figure in figures:
        assert [a.text for a in figure.layout.annotations] == [
            "weights, gradients and activations appear here when training starts"]
    xb.fit(model, (x[:64], y[:64]), epochs=1, batch_size=32, callbacks=[panels.inspector], verbose=False)
    assert not panels.norms.empty
    for figure in figures:
        assert not figure.layout.annotations and len(figure.data[0].x) > 0
