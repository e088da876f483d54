"""Shared helpers for the core tests: small specs and data, and plain-PyTorch references.

The references never go through exburn_nb: a plain ``nn.Sequential`` is built from a spec
with the same initial weights, and trained by a hand-written loop, so every number the
core produces can be checked against what PyTorch itself computes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import exburn_nb as xb

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "softmax": lambda: nn.Softmax(dim=1)}


def mlp_spec(n_in: int = 6, hidden: int = 8, n_out: int = 3, activation: str = "tanh",
             out_activation: str | None = None, dropout: float | None = None) -> xb.Spec:
    """input(n_in) -> dense(hidden, activation, "hidden") [-> dropout] -> dense(n_out, "output")."""
    spec = xb.input("input", shape=(None, n_in)).dense(hidden, activation=activation,
                                                        name="hidden")
    if dropout is not None:
        spec = spec.dropout(rate=dropout)
    return spec.dense(n_out, activation=out_activation, name="output")


def classification_data(n: int = 48, n_in: int = 6, classes: int = 3,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features and integer labels that depend on them (learnable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, classes, generator=g)
    y = (x @ w + 0.3 * torch.randn(n, classes, generator=g)).argmax(dim=1)
    return x, y


def regression_data(n: int = 48, n_in: int = 6, n_out: int = 1, scale: float = 1.0,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features and float targets (a noisy linear function, times ``scale``)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = scale * (x @ torch.randn(n_in, n_out, generator=g) + 0.1 * torch.randn(n, n_out, generator=g))
    return x, y


def reference_net(model: xb.Model) -> nn.Sequential:
    """A plain ``nn.Sequential`` equal to ``model`` (dense/dropout/activation specs), sharing
    no tensors with it: ``nn.Linear`` + activation modules with copies of its weights."""
    modules: list[nn.Module] = []
    params = model.parameters()
    for layer, _shape in model.spec.layer_shapes:
        if layer.kind == "dense":
            weight, bias = params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
            modules.append(linear)
            if layer.options["activation"]:
                modules.append(ACTIVATIONS[layer.options["activation"]]())
        elif layer.kind == "dropout":
            modules.append(nn.Dropout(layer.options["rate"]))
        elif layer.kind == "activation":
            modules.append(ACTIVATIONS[layer.options["fn"]]())
        else:
            raise NotImplementedError(layer.kind)
    return nn.Sequential(*modules)


def torch_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The torch.nn.functional loss for a model whose output layer gives raw values."""
    return {"cross_entropy": F.cross_entropy, "mse": F.mse_loss,
            "binary_cross_entropy": F.binary_cross_entropy_with_logits}[name]


def hand_loop(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              loss_fn: Callable, epochs: int, batch_size: int,
              before_step: Callable[[nn.Module], None] | None = None,
              scheduler_lrs: list[float] | None = None) -> list[float]:
    """Train ``net`` in order (no shuffling) and return the loss of every batch.

    ``scheduler_lrs``, when given, sets the learning rate at the start of each epoch.
    """
    losses = []
    for epoch in range(epochs):
        if scheduler_lrs is not None:
            for group in opt.param_groups:
                group["lr"] = scheduler_lrs[epoch]
        for lo in range(0, x.shape[0], batch_size):
            opt.zero_grad()
            loss = loss_fn(net(x[lo:lo + batch_size]), y[lo:lo + batch_size])
            loss.backward()
            if before_step is not None:
                before_step(net)
            opt.step()
            losses.append(loss.item())
    return losses


def assert_same_params(model: xb.Model, net: nn.Module, atol: float = 1e-6,
                       rtol: float = 1e-5) -> None:
    """``model``'s parameters equal ``net``'s, matched in order."""
    ours = list(model.parameters().values())
    theirs = list(net.parameters())
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), atol=atol, rtol=rtol)


def snapshot(model: xb.Model) -> dict[str, torch.Tensor]:
    """Copies of the model's parameters and buffers."""
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def assert_state_equal(model: xb.Model, state: dict[str, torch.Tensor]) -> None:
    """``model``'s parameters and buffers are exactly ``state``."""
    current = model.module.state_dict()
    assert current.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(current[name], value), f"{name} changed"


def fit(model: xb.Model, data: tuple, **kwargs: object) -> xb.Model:
    """``xb.fit`` without the progress output (``verbose=False`` unless given)."""
    kwargs.setdefault("verbose", False)
    return xb.fit(model, data, **kwargs)
