"""Turning user data (torch tensors, NumPy arrays, pandas objects) into checked tensors.

Every error names the argument, what was expected and what came, and is raised before
any training step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_tensor(value: Any, argname: str) -> torch.Tensor:
    """A tensor from a tensor, NumPy array, pandas DataFrame/Series or nested list.

    Example:
        >>> to_tensor([[1, 2], [3, 4]], "x").shape
        torch.Size([2, 2])
    """
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "to_numpy") and hasattr(value, "dtypes"):  # pandas DataFrame / Series
        value = value.to_numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{argname} must be a tensor, NumPy array or pandas object; "
                         f"got {type(value).__name__} ({exc})") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"{argname} must hold numbers; got dtype {array.dtype} "
                         f"(from {type(value).__name__})")
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))  # read-only: copied


def as_features(x: Any, input_shape: tuple | None, argname: str = "x",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x`` as a float tensor whose shape matches ``input_shape`` (``(None, ...)``).

    A single sample (shape ``input_shape[1:]``) is not accepted silently: the batch
    dimension is always required, so shapes never get guessed. ``input_shape=None`` (a
    plain ``torch.nn.Module`` compiled without one) skips the shape check.
    """
    t = to_tensor(x, argname)
    if not (t.is_floating_point() or t.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16,
                                                  torch.int32, torch.int64)):
        raise ValueError(f"{argname} must hold real numbers; got dtype {t.dtype}")
    if t.dim() == 0:
        raise ValueError(f"{argname} must have a batch dimension; got a scalar")
    if input_shape is not None and (t.dim() != len(input_shape)
                                    or tuple(t.shape[1:]) != tuple(input_shape[1:])):
        expected = tuple(input_shape[1:])
        raise ValueError(f"{argname} has shape {tuple(t.shape)}, but the input layer expects "
                         f"(batch, {', '.join(map(str, expected))}), i.e. {tuple(input_shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{argname} is empty: it has 0 samples")
    return t.to(dtype)


def check_same_length(x: torch.Tensor, y: torch.Tensor, xname: str, yname: str) -> None:
    """Raise when ``x`` and ``y`` hold different numbers of samples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{xname} and {yname} must hold the same number of samples; "
                         f"got {x.shape[0]} and {y.shape[0]}")


def split_pair(data: Any, argname: str) -> tuple[Any, Any]:
    """``(x, y)`` from a 2-tuple or 2-list, with a clear error otherwise."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{argname} must be a pair (x, y); got {type(data).__name__}"
                         + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    return data[0], data[1]
