"""The models and data sets every contender trains, described once as plain data.

A workload is a JSON-ready dict (it crosses process boundaries to the workers)::

    {"name": "mlp", "input_shape": [784], "classes": 10, "data": "synthetic",
     "n": 60000, "seed": 0, "layers": [{"kind": "dense", "units": 256, "activation": "relu"},
                                        {"kind": "dropout", "rate": 0.2}, ...]}

Layer kinds are exburn_nb's spec kinds (``dense``, ``dropout``, ``conv2d``, ``max_pool2d``,
``flatten``). Each contender builds the same network from it with its own library
(:func:`torch_module` here for the plain-PyTorch contenders, Lightning and skorch; the
exburn_nb and Keras contenders have their own builders). Every build uses Glorot-uniform
weights and zero biases, so the math is the same everywhere.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _dense(units: int, activation: str | None = "relu") -> dict:
    return {"kind": "dense", "units": units, "activation": activation}


def _dropout(rate: float = 0.2) -> dict:
    return {"kind": "dropout", "rate": rate}


def guide_mlp(n: int = 60_000, width: int = 256, seed: int = 0) -> dict:
    """The guide's MLP: 784-256-128-10, dropout 0.2 after each hidden layer.

    ``width`` scales the hidden layers as (width, width // 2) for the scaling table;
    the guide's network is ``width=256``. Data: synthetic, MNIST-shaped (``n`` x 784).
    """
    name = "guide MLP" if width == 256 else f"MLP {width}-{width // 2}"
    return {"name": name, "input_shape": [784], "classes": 10, "data": "synthetic", "n": n,
            "seed": seed, "layers": [_dense(width), _dropout(), _dense(width // 2), _dropout(),
                                     _dense(10, None)]}


def digits_mlp(seed: int = 0) -> dict:
    """The digits MLP: 64-32-10 on scikit-learn's 8x8 digits (all 1,797 samples)."""
    return {"name": "digits MLP", "input_shape": [64], "classes": 10, "data": "digits",
            "n": 1797, "seed": seed, "layers": [_dense(32), _dense(10, None)]}


def small_cnn(n: int = 6_400, seed: int = 0) -> dict:
    """A small CNN on synthetic MNIST-shaped images (n x 1 x 28 x 28):
    conv 16@3x3 relu, max-pool 2, conv 32@3x3 relu, max-pool 2, flatten, dense 10."""
    return {"name": "small CNN", "input_shape": [1, 28, 28], "classes": 10, "data": "synthetic",
            "n": n, "seed": seed, "layers": [
                {"kind": "conv2d", "filters": 16, "kernel_size": 3, "activation": "relu"},
                {"kind": "max_pool2d", "pool_size": 2},
                {"kind": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
                {"kind": "max_pool2d", "pool_size": 2},
                {"kind": "flatten"}, _dense(10, None)]}


def tiny_linear(n: int = 32_000, seed: int = 0) -> dict:
    """The per-step overhead probe: one 10 -> 10 linear layer (110 parameters)."""
    return {"name": "tiny 10->10 linear", "input_shape": [10], "classes": 10,
            "data": "synthetic", "n": n, "seed": seed, "layers": [_dense(10, None)]}


# ------------------------------------------------------------------------- data
def make_data(workload: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` on the CPU: float32 features, int64 class labels; the same in every process."""
    if workload["data"] == "digits":
        data = _digits()
        x = torch.from_numpy(data[:, :-1]).float()
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
        y = torch.from_numpy(data[:, -1]).long()
        return x.reshape(-1, *workload["input_shape"]).contiguous(), y
    g = torch.Generator().manual_seed(workload["seed"])
    n = workload["n"]
    x = torch.randn((n, *workload["input_shape"]), generator=g)
    y = torch.randint(0, workload["classes"], (n,), generator=g)
    return x, y


def _digits() -> np.ndarray:
    """scikit-learn's digits (1,797 x 64 pixels + label), read from the file it ships
    without importing scikit-learn (each worker would pay about a second for it)."""
    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            return np.loadtxt(path, delimiter=",", dtype=np.float64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.column_stack([d.data, d.target])


# ------------------------------------------------------------------------- torch
def torch_module(workload: dict) -> nn.Sequential:
    """The workload's network as a plain ``nn.Sequential`` (activations as separate modules)."""
    shape, modules = list(workload["input_shape"]), []
    for layer in workload["layers"]:
        kind = layer["kind"]
        if kind == "dense":
            modules.append(nn.Linear(shape[-1], layer["units"]))
            shape = shape[:-1] + [layer["units"]]
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["rate"]))
        elif kind == "conv2d":
            modules.append(nn.Conv2d(shape[0], layer["filters"], layer["kernel_size"],
                                     padding="same"))
            shape = [layer["filters"], *shape[1:]]
        elif kind == "max_pool2d":
            modules.append(nn.MaxPool2d(layer["pool_size"]))
            shape = [shape[0]] + [d // layer["pool_size"] for d in shape[1:]]
        elif kind == "flatten":
            modules.append(nn.Flatten())
            shape = [math.prod(shape)]
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        if layer.get("activation") == "relu":
            modules.append(nn.ReLU())
        elif layer.get("activation") is not None:
            raise ValueError(f"unsupported activation {layer['activation']!r}")
    net = nn.Sequential(*modules)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return net


# ------------------------------------------------------------------------- counting
def layer_macs(workload: dict) -> list[tuple[str, int, int, int]]:
    """Per weight layer: ``(kind, multiply-adds per sample, fan_in, fan_out)``."""
    shape, out = list(workload["input_shape"]), []
    for layer in workload["layers"]:
        kind = layer["kind"]
        if kind == "dense":
            out.append(("dense", shape[-1] * layer["units"], shape[-1], layer["units"]))
            shape = shape[:-1] + [layer["units"]]
        elif kind == "conv2d":
            k2 = layer["kernel_size"] ** 2
            pixels = math.prod(shape[1:])
            out.append(("conv2d", pixels * shape[0] * k2 * layer["filters"], shape[0] * k2,
                        layer["filters"]))
            shape = [layer["filters"], *shape[1:]]
        elif kind == "max_pool2d":
            shape = [shape[0]] + [d // layer["pool_size"] for d in shape[1:]]
        elif kind == "flatten":
            shape = [math.prod(shape)]
    return out


def param_count(workload: dict) -> int:
    """Trainable parameters (weights and biases)."""
    return sum(fan_in * fan_out + fan_out for _, _, fan_in, fan_out in layer_macs(workload))


def train_matmul_flops(workload: dict) -> int:
    """Matmul FLOPs one training sample costs: forward, weight gradient, and input gradient
    for every weight layer but the first (autograd skips the gradient of the data)."""
    macs = [m for _, m, _, _ in layer_macs(workload)]
    return 2 * (3 * sum(macs) - macs[0])
