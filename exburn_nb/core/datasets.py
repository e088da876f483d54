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

from ..base.checks import check_seed

Split = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# The generated sets' limits: a million points is 16 MB of float64 coordinates (a few
# copies while made); noise past 1,000 has drowned any structure (the sets span [-1, 1])
# and keeps every point finite in float32.
MAX_POINTS = 1_000_000
MAX_NOISE = 1_000.0


def _sklearn_datasets():  # noqa: ANN202 - a module
    try:
        from sklearn import datasets
    except ImportError:
        raise ImportError("exburn_nb.core.datasets needs scikit-learn for its real data sets: "
                          "pip install scikit-learn") from None
    return datasets


def _check_split(test_fraction: float, seed: int | None) -> None:
    """Raise a ValueError naming ``test_fraction`` or ``seed`` unless it is usable: a number
    in (0, 1), and None or an integer in [0, 2**64 - 1]."""
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float))
            or not 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be a number in (0, 1); got {test_fraction!r}")
    check_seed(seed)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           standardize: bool = True) -> Split:
    """Shuffle with ``seed`` and split (arguments checked by the caller, before any work)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    if n_test >= len(x):
        raise ValueError(f"test_fraction={test_fraction!r} leaves {len(x) - n_test} of the "
                         f"{len(x)} samples for training and {n_test} for testing; both "
                         f"splits need at least one")
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
    _check_split(test_fraction, seed)
    for name, value in (("images", images), ("standardize", standardize)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False; got {value!r}")
    data = _sklearn_datasets().load_digits()
    (x, y), (tx, ty) = _split(data.data, data.target.astype(np.int64), test_fraction, seed,
                              standardize)
    if images:
        x, tx = x.reshape(-1, 1, 8, 8), tx.reshape(-1, 1, 8, 8)
    return (x, y), (tx, ty)


def breast_cancer(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's breast-cancer data: 569 samples, 30 features, 0/1 float targets."""
    _check_split(test_fraction, seed)
    data = _sklearn_datasets().load_breast_cancer()
    return _split(data.data, data.target.astype(np.float32), test_fraction, seed)


def diabetes(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's diabetes regression data: 442 samples, 10 features, ``(N, 1)`` targets
    standardised to mean 0 and standard deviation 1."""
    _check_split(test_fraction, seed)
    data = _sklearn_datasets().load_diabetes()
    y = data.target.astype(np.float32)
    y = (y - y.mean()) / y.std()
    return _split(data.data, y.reshape(-1, 1), test_fraction, seed)


def _check_toy(n: int, classes: int, noise: float, test_fraction: float, seed: int | None,
               min_classes: int = 2, max_classes: int | None = None) -> None:
    """Raise a ValueError naming the generator argument that is out of range."""
    _check_split(test_fraction, seed)
    max_classes = MAX_POINTS // 4 if max_classes is None else max_classes
    if (isinstance(classes, bool) or not isinstance(classes, int)
            or not min_classes <= classes <= max_classes):
        allowed = f"{min_classes}" if max_classes == min_classes else (
            f">= {min_classes} and <= {max_classes}")
        raise ValueError(f"classes must be an integer {allowed}; got {classes!r:.60}")
    if isinstance(n, bool) or not isinstance(n, int) or not 4 * classes <= n <= MAX_POINTS:
        raise ValueError(f"n must be an integer >= {4 * classes} (4 per class) and <= "
                         f"{MAX_POINTS:,} (MAX_POINTS); got {n!r:.60}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= MAX_NOISE:
        raise ValueError(f"noise must be a number >= 0 and <= {MAX_NOISE:g}; got {noise!r:.60}")


def _per_class(n: int, classes: int) -> list[int]:
    """``n`` split into ``classes`` counts that differ by at most one."""
    return [n // classes + (c < n % classes) for c in range(classes)]


def _toy(parts: list[np.ndarray], test_fraction: float, seed: int) -> Split:
    x = np.concatenate(parts)
    y = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in enumerate(parts)])
    return _split(x, y, test_fraction, seed, standardize=False)


def circles(n: int = 500, classes: int = 2, noise: float = 0.1, test_fraction: float = 0.2,
            seed: int = 0) -> Split:
    """Concentric rings (generated): class ``c`` lies on the circle of radius ``(c + 1) /
    classes``, with Gaussian ``noise`` (standard deviation) added to every point.

    Example:
        >>> (x, y), (tx, ty) = circles(n=200, noise=0.05)
        >>> x.shape[1], sorted(set(y.tolist()))
        (2, [0, 1])
    """
    _check_toy(n, classes, noise, test_fraction, seed)
    rng = np.random.default_rng(seed)
    parts = []
    for c, count in enumerate(_per_class(n, classes)):
        t = rng.uniform(0, 2 * math.pi, count)
        ring = (c + 1) / classes * np.stack([np.cos(t), np.sin(t)], axis=1)
        parts.append(ring + rng.normal(0, noise, (count, 2)))
    return _toy(parts, test_fraction, seed)


def moons(n: int = 500, classes: int = 2, noise: float = 0.1, test_fraction: float = 0.2,
          seed: int = 0) -> Split:
    """Two interleaving half circles (generated), as scikit-learn's ``make_moons``,
    centred on the origin; ``classes`` must be 2.

    Example:
        >>> (x, y), _ = moons(n=100, seed=1)
        >>> x.shape
        torch.Size([80, 2])
    """
    _check_toy(n, classes, noise, test_fraction, seed, max_classes=2)
    rng = np.random.default_rng(seed)
    upper, lower = _per_class(n, 2)
    t0, t1 = rng.uniform(0, math.pi, upper), rng.uniform(0, math.pi, lower)
    parts = [np.stack([np.cos(t0) - 0.5, np.sin(t0) - 0.25], axis=1),
             np.stack([0.5 - np.cos(t1), 0.25 - np.sin(t1)], axis=1)]
    parts = [p + rng.normal(0, noise, p.shape) for p in parts]
    return _toy(parts, test_fraction, seed)


def xor(n: int = 500, classes: int = 2, noise: float = 0.1, test_fraction: float = 0.2,
        seed: int = 0) -> Split:
    """The XOR quadrants (generated): points uniform in ``[-1, 1]^2`` (kept 0.05 off the
    axes), class 1 where ``x1 * x2 < 0``, with Gaussian ``noise`` added afterwards;
    ``classes`` must be 2.

    Example:
        >>> (x, y), _ = xor(n=100, noise=0.0)
        >>> bool(((x[:, 0] * x[:, 1] < 0).long() == y).all())
        True
    """
    _check_toy(n, classes, noise, test_fraction, seed, max_classes=2)
    rng = np.random.default_rng(seed)
    parts = []
    for c, count in enumerate(_per_class(n, 2)):
        a = rng.uniform(0.05, 1, count) * rng.choice([-1, 1], count)
        b = rng.uniform(0.05, 1, count) * np.sign(a) * (-1 if c else 1)
        parts.append(np.stack([a, b], axis=1) + rng.normal(0, noise, (count, 2)))
    return _toy(parts, test_fraction, seed)


def blobs(n: int = 500, classes: int = 3, noise: float = 0.2, test_fraction: float = 0.2,
          seed: int = 0) -> Split:
    """Gaussian blobs (generated): class ``c`` centred at radius 0.7 and angle ``2 pi c /
    classes``, with standard deviation ``noise``.

    Example:
        >>> (x, y), _ = blobs(n=300, classes=4)
        >>> sorted(set(y.tolist()))
        [0, 1, 2, 3]
    """
    _check_toy(n, classes, noise, test_fraction, seed)
    rng = np.random.default_rng(seed)
    parts = []
    for c, count in enumerate(_per_class(n, classes)):
        angle = 2 * math.pi * c / classes
        centre = 0.7 * np.array([math.cos(angle), math.sin(angle)])
        parts.append(centre + rng.normal(0, noise, (count, 2)))
    return _toy(parts, test_fraction, seed)


def spirals(n: int = 1000, classes: int = 3, noise: float = 0.2, test_fraction: float = 0.2,
            seed: int = 0) -> Split:
    """Interleaved 2-D spirals (generated): the classroom's decision-boundary data set.

    ``n // classes`` points per class; ``noise`` perturbs the angle (radians).
    """
    _check_toy(n, classes, noise, test_fraction, seed)
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


TOY_SETS = {"circles": circles, "moons": moons, "xor": xor, "blobs": blobs, "spirals": spirals}
"""The generated 2-D sets by name (the playground's picker)."""


def toy(name: str, **options: float) -> Split:
    """A generated 2-D set by name (see :data:`TOY_SETS`) with its options.

    Example:
        >>> (x, y), _ = toy("moons", n=100, noise=0.05)
        >>> x.shape[1]
        2
    """
    if not isinstance(name, str) or name not in TOY_SETS:
        raise ValueError(f"data set name must be one of {', '.join(TOY_SETS)}; got {name!r}")
    return TOY_SETS[name](**options)
