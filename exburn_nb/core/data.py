"""Turning user data (torch tensors, NumPy arrays, pandas objects) into checked tensors.

Every error names the argument, what was expected and what came, and is raised before
any training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
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


def count_non_finite(t: torch.Tensor) -> int:
    """The number of NaN or infinite elements of ``t`` (0 for integer tensors).

    The common answer, 0, costs one BLAS pass and no memory: the dot product of the
    data with itself is finite only when every element is (its terms are squares, so
    nothing cancels). Only when it is not (or overflows) are the elements counted.
    """
    if not t.is_floating_point() or t.numel() == 0:
        return 0
    flat = t.reshape(-1)
    if flat.dtype in (torch.float32, torch.float64) and math.isfinite(float(flat @ flat)):
        return 0
    return int(t.numel() - torch.isfinite(t).sum())


def check_finite(t: torch.Tensor, argname: str) -> None:
    """Refuse NaN or infinite values, naming the argument and how many there are.

    Example:
        >>> check_finite(torch.tensor([1.0, float("nan")]), "data x")
        Traceback (most recent call last):
        ...
        ValueError: data x holds 1 non-finite value (NaN or inf) of 2; clean the data, or pass check_data=False to train on it anyway
    """
    bad = count_non_finite(t)
    if bad:
        raise ValueError(f"{argname} holds {bad:,} non-finite value{'s' if bad != 1 else ''} "
                         f"(NaN or inf) of {t.numel():,}; clean the data, or pass "
                         "check_data=False to train on it anyway")


GATHER_BYTES = 2**20


def _in_batches(t: torch.Tensor, order: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """The rows of ``t`` in ``order``, in batches of ``size``, gathered a chunk of about
    :data:`GATHER_BYTES` at a time (whole batches; the whole epoch for labels and small
    data sets) and handed out as contiguous views: one ``index_select`` per batch costs
    more than its copy, as it runs with the caches cold from the training step, and a
    chunk keeps no second copy of a large data set.

    ``order`` is ``(n,)``, or ``(M, n)`` with one order per member of a stacked run:
    batches are then ``(M, size, ...)``, member ``m``'s rows from ``order[m]``.

    Example:
        >>> order = torch.tensor([4, 0, 3, 1, 2])
        >>> [b.tolist() for b in _in_batches(torch.arange(5) * 10, order, 2)]
        [[40, 0], [30, 10], [20]]
        >>> [b.tolist() for b in _in_batches(torch.arange(5) * 10, order.expand(2, 5), 2)][-1]
        [[20], [20]]
    """
    members, n = order.shape[:-1], order.shape[-1]  # members: () or (M,)
    row = t.nbytes // max(1, t.shape[0])
    chunk = max(1, GATHER_BYTES // max(1, row * size * members.numel())) * size
    for lo in range(0, n, chunk):
        cols = order[..., lo:lo + chunk]
        full, rest = divmod(cols.shape[-1], size)
        if full:
            idx = cols[..., :full * size] if rest else cols
            if members:  # batch-major, so that each batch is one contiguous block
                idx = idx.reshape(-1, full, size).transpose(0, 1).reshape(-1)
            gathered = t.index_select(0, idx)
            if full == 1 and not members:  # a chunk of one batch (large rows): as it is
                yield gathered
            else:
                yield from gathered.view(full, *members, size, *t.shape[1:]).unbind(0)
        if rest:
            yield t.index_select(0, cols[..., full * size:].reshape(-1)).view(
                *members, rest, *t.shape[1:])


class TensorBatches:
    """The in-memory fast path: ``(x, y)`` on the model's device, batched by index.

    ``epoch(order)`` yields ``(xb, yb)`` in ``order`` (a permutation tensor) or in
    sequence; gathering by ``index_select`` is about twice as fast as ``x[idx]`` on CPU,
    a chunk of batches at a time (:func:`_in_batches`).
    With one permutation per member of a stacked run (``order`` of shape ``(M, n)``),
    each batch is ``(M, B, ...)``: every member's own samples, gathered in one pass.

    Example:
        >>> b = TensorBatches(torch.arange(6.0).view(6, 1), torch.arange(6), 4)
        >>> [yb.tolist() for _, yb in b.epoch(torch.tensor([[5, 4, 3, 2, 1, 0],
        ...                                                  [0, 1, 2, 3, 4, 5]]))]
        [[[5, 4, 3, 2], [0, 1, 2, 3]], [[1, 0], [4, 5]]]
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.samples = x.shape[0]
        self.batches = -(-self.samples // batch_size)

    def epoch(self, order: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch."""
        bs, x, y = self.batch_size, self.x, self.y
        if not self.samples:  # split would give one empty batch
            return
        if order is None:
            yield from zip(x.split(bs), y.split(bs), strict=True)
        else:
            yield from zip(_in_batches(x, order, bs), _in_batches(y, order, bs), strict=True)


class LoaderBatches:
    """Batches from a ``torch.utils.data.DataLoader`` (data that does not fit in memory,
    augmentation, custom samplers), moved to the model's device as they come.

    ``prepare(xb, yb)`` checks and converts each batch as the in-memory path's data is
    checked once. ``batches`` is ``len(loader)`` or None for iterable datasets of
    unknown length.
    """

    def __init__(self, loader: Any, prepare: Callable[[Any, Any], tuple[torch.Tensor,
                                                                         torch.Tensor]]):
        self.loader, self.prepare = loader, prepare
        try:
            self.batches: int | None = len(loader)
        except TypeError:
            self.batches = None
        self.samples = None
        self.batch_size = getattr(loader, "batch_size", None)

    def epoch(self, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor,
                                                                     torch.Tensor]]:
        """The loader's batches, prepared (``order`` is ignored: the sampler decides)."""
        for i, batch in enumerate(self.loader):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(f"data: each DataLoader batch must be a pair (x, y); batch "
                                 f"{i + 1} is a {type(batch).__name__}"
                                 + (f" of length {len(batch)}"
                                    if isinstance(batch, (tuple, list)) else ""))
            yield self.prepare(batch[0], batch[1])


def is_loader(data: Any) -> bool:
    """Whether ``data`` is a ``DataLoader`` (or a ``Dataset``, which ``fit`` wraps in one)."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    return isinstance(data, (DataLoader, Dataset, IterableDataset))
