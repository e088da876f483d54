"""Small real data sets that ship inside packages (no downloads), and generated ones.

Each function returns ``(x_train, y_train), (x_test, y_test)`` as float32/int64 tensors,
split with a fixed seed and standardised with the training split's statistics.
scikit-learn provides the real data (``pip install scikit-learn``).

Example:
    >>> (x, y), (tx, ty) = digits()
    >>> x.shape, y.dtype
    (torch.Size([1438, 64]), torch.int64)
"""

from __future__ import annotations

import math

import numpy as np
import torch

Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _sklearn_datasets():  # noqa: ANN202 - a module
    try:
        from sklearn import datasets
    except ImportError:
        raise ImportError("exburn_nb.datasets needs scikit-learn for its real data sets: "
                          "pip install scikit-learn") from None
    return datasets


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           standardize: bool = True) -> Split:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    x = x.astype(np.float32)
    if standardize:
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return (xt[train], yt[train]), (xt[test], yt[test])


def digits(test_fraction: float = 0.2, seed: int = 0, images: bool = False,
           standardize: bool = True) -> Split:
    """scikit-learn's 8x8 handwritten digits: 1,797 samples, 64 features, 10 classes.

    ``images=True`` gives ``(N, 1, 8, 8)`` tensors for convolutional models;
    ``standardize=False`` the raw ink levels 0-16 (the same split), e.g. to show them.
    """
    data = _sklearn_datasets().load_digits()
    (x, y), (tx, ty) = _split(data.data, data.target.astype(np.int64), test_fraction, seed,
                              standardize)
    if images:
        x, tx = x.reshape(-1, 1, 8, 8), tx.reshape(-1, 1, 8, 8)
    return (x, y), (tx, ty)


def breast_cancer(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's breast-cancer data: 569 samples, 30 features, 0/1 float targets."""
    data = _sklearn_datasets().load_breast_cancer()
    return _split(data.data, data.target.astype(np.float32), test_fraction, seed)


def diabetes(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's diabetes regression data: 442 samples, 10 features, ``(N, 1)`` targets
    standardised to mean 0 and standard deviation 1."""
    data = _sklearn_datasets().load_diabetes()
    y = data.target.astype(np.float32)
    y = (y - y.mean()) / y.std()
    return _split(data.data, y.reshape(-1, 1), test_fraction, seed)


def spirals(n: int = 1000, classes: int = 3, noise: float = 0.2, test_fraction: float = 0.2,
            seed: int = 0) -> Split:
    """Interleaved 2-D spirals (generated): the classroom's decision-boundary data set."""
    rng = np.random.default_rng(seed)
    per = n // classes
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.1, 1, per)
        t = np.linspace(c * 2 * math.pi / classes, c * 2 * math.pi / classes + 3 * math.pi / 2,
                        per) + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per, c, dtype=np.int64))
    return _split(np.concatenate(xs), np.concatenate(ys), test_fraction, seed, standardize=False)
