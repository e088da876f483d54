"""Training inputs checked against a model: ``(x, y)`` pairs on its device, and the
options that depend on the model (accuracy needs a classification loss).

Example:
    >>> import exburn_nb as xb
    >>> model = xb.compile(xb.input("input", shape=(None, 2)).dense(3))
    >>> x, y = prepare_pair(model, ([[0.0, 1.0]], [2]))
    >>> x.shape, y.tolist()
    (torch.Size([1, 2]), [2])
"""

from __future__ import annotations

from typing import Any

import torch

from .config import FitConfig
from .data import (
    LoaderBatches,
    TensorBatches,
    as_features,
    check_finite,
    check_same_length,
    is_loader,
    split_pair,
    to_tensor,
)
from .model import Model


def check_pair(model: Model, data: Any, argname: str = "data",
               check_data: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as tensors checked against the model (shapes, labels, lengths; with
    ``check_data`` also NaN/inf), where they are: nothing is moved to the device.

    Example:
        >>> import exburn_nb as xb
        >>> model = xb.compile(xb.input("input", shape=(None, 2)).dense(3))
        >>> check_pair(model, ([[0.0, 1.0]], [5]))
        Traceback (most recent call last):
        ...
        ValueError: data y holds label 5, outside [0, 3) for an output of 3 classes
    """
    if hasattr(model, "to_dict") and not isinstance(model, Model):
        raise ValueError(f"model must be a compiled exburn_nb Model; got a "
                         f"{type(model).__name__}: compile the spec first: "
                         "model = xb.compile(spec, ...)")
    if not isinstance(model, Model):
        raise ValueError(f"model must be a compiled exburn_nb Model; got {type(model).__name__}")
    x, y = split_pair(data, argname)
    x = as_features(x, model.input_shape, f"{argname} x")
    y = model.loss.prepare_targets(to_tensor(y, f"{argname} y"), model.output_shape,
                                   f"{argname} y")
    check_same_length(x, y, f"{argname} x", f"{argname} y")
    if check_data:
        check_finite(x, f"{argname} x")
        check_finite(y, f"{argname} y")
    return x, y


def prepare_pair(model: Model, data: Any, argname: str = "data",
                 check_data: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` checked as :func:`check_pair` does, on the model's device (copied
    without blocking)."""
    x, y = check_pair(model, data, argname, check_data)
    device = model.torch_device
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def batch_source(model: Model, data: Any, config: FitConfig, argname: str = "data",
                 batch_size: int | None = None) -> TensorBatches | LoaderBatches:
    """Where a run's batches come from: ``(x, y)`` checked and moved to the model's device
    once (batched by index), or a loader (a ``Dataset`` is wrapped in one, shuffled when
    ``config.shuffle`` and it is the training data) whose batches are checked as they come.

    Example:
        >>> import exburn_nb as xb
        >>> model = xb.compile(xb.input("input", shape=(None, 2)).dense(3))
        >>> source = batch_source(model, ([[0.0, 1.0]] * 5, [0] * 5), FitConfig(batch_size=2))
        >>> source.batches, source.samples
        (3, 5)
    """
    size, check = batch_size or config.batch_size, config.check_data
    if is_loader(data):
        from torch.utils.data import DataLoader, IterableDataset

        if not isinstance(data, DataLoader):
            shuffle = (argname == "data" and config.shuffle
                       and not isinstance(data, IterableDataset))  # streams keep their order
            data = DataLoader(data, batch_size=size, shuffle=shuffle,
                              pin_memory=model.torch_device.type == "cuda")
        return LoaderBatches(data, lambda x, y: prepare_pair(model, (x, y), argname, check))
    x, y = prepare_pair(model, data, argname, check)
    return TensorBatches(x, y, size)


def check_accuracy(model: Model, accuracy: bool) -> None:
    """Accuracy is defined for the classification losses only."""
    if accuracy and not model.loss.is_classification:
        raise ValueError(f"accuracy=True needs a classification loss (cross_entropy or "
                         f"binary_cross_entropy); this model uses {model.loss_function!r}")
