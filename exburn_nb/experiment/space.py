"""Search spaces for :class:`~exburn_nb.experiment.Experiment` (``xb.space``).

A parameter's candidates are a list (categorical) or one of the ranges here. Ranges are
drawn by ``search="random"`` and ``search="optuna"``; ``search="grid"`` takes lists and
:func:`integers` only.

Example:
    >>> params = {"learning_rate": xb.space.loguniform(1e-4, 1e-1),
    ...           "units": xb.space.integers(16, 128, log=True),
    ...           "optimizer": ["adam", "sgd"]}  # doctest: +SKIP
    >>> loguniform(1e-4, 1e-1)
    loguniform(0.0001, 0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from ..core.config import COMPILE_OPTIONS, FIT_OPTIONS
from .runs import RESERVED_PARAMS

KINDS = ("uniform", "loguniform", "integers")


@dataclass(frozen=True)
class Range:
    """A numeric range: ``kind`` is ``"uniform"``, ``"loguniform"`` or ``"integers"``."""

    kind: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"a range's kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        fixed_log = {"uniform": False, "loguniform": True}.get(self.kind)  # integers: either
        if not isinstance(self.log, bool) or fixed_log not in (None, self.log):
            raise ValueError(f"{self.kind}: log must be "
                             f"{'True or False' if fixed_log is None else fixed_log}; "
                             f"got {self.log!r}")
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not _finite(value):
                raise ValueError(f"{self.kind}: {name} must be a finite number; got {value!r}")
            if self.kind == "integers" and int(value) != value:
                raise ValueError(f"integers: {name} must be an integer; got {value!r}")
        if not self.low < self.high and not (self.kind == "integers" and self.low == self.high):
            raise ValueError(f"{self.kind}: low must be below high; got {self.low!r}, {self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.kind}: a log range needs low > 0; got {self.low!r}")

    def __repr__(self) -> str:
        if self.kind == "integers":
            return f"integers({int(self.low)}, {int(self.high)}, log={self.log})"
        return f"{self.kind}({self.low:g}, {self.high:g})"

    @property
    def discrete(self) -> bool:
        """Whether a grid can enumerate it (integers)."""
        return self.kind == "integers"

    def size(self) -> int:
        """How many values a grid takes from it (integers only), without listing them.

        Example:
            >>> integers(1, 10**12).size()
            1000000000000
        """
        if not self.discrete:
            raise ValueError(f"a grid needs finite candidates; {self!r} is continuous: use a "
                             "list of values, or search='random' / 'optuna'")
        return int(self.high) - int(self.low) + 1

    def values(self) -> list:
        """Every value, for a grid (integers only)."""
        self.size()  # refuses a continuous range
        return list(range(int(self.low), int(self.high) + 1))

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value drawn with ``rng``."""
        if self.kind == "integers":
            if self.log:
                value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
                return int(min(math.floor(value), self.high))
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def to_dict(self) -> dict:
        """JSON-ready form (see :func:`from_dict`)."""
        return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


def _finite(value: Real) -> bool:
    """Whether ``value`` is a finite number a float can hold (no inf, NaN, 10**400)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def uniform(low: float, high: float) -> Range:
    """Floats drawn uniformly in ``[low, high]``.

    Example:
        >>> uniform(0.0, 0.5).kind
        'uniform'
    """
    return Range("uniform", low, high)


def loguniform(low: float, high: float) -> Range:
    """Floats whose logarithm is uniform in ``[log low, log high]`` (learning rates).

    Example:
        >>> loguniform(1e-4, 1e-1).log
        True
    """
    return Range("loguniform", low, high, log=True)


def integers(low: int, high: int, log: bool = False) -> Range:
    """Integers in ``[low, high]`` (both included), uniform or log-uniform.

    Example:
        >>> integers(1, 3).values()
        [1, 2, 3]
    """
    return Range("integers", low, high, log=bool(log))


def from_dict(data: Any) -> Any:
    """A candidate list or a :class:`Range` back from :meth:`Range.to_dict` (every value
    checked)."""
    if isinstance(data, dict):
        if set(data) != {"kind", "low", "high", "log"}:
            raise ValueError(f"a range must have the keys kind, low, high and log; got "
                             f"{sorted(map(str, data))}")
        return Range(data["kind"], data["low"], data["high"], data["log"])
    return data


def check_candidates(name: Any, candidates: Any) -> list | Range:
    """``candidates`` as a non-empty list or a :class:`Range`, else a ``ValueError``; a
    ``name`` that is a column of the results (:data:`~exburn_nb.experiment.runs.RESERVED_PARAMS`)
    is refused too.

    Example:
        >>> check_candidates("epoch", [1, 2])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: params: 'epoch' is a column of the experiment's results; give the param another name (reserved: epoch, loss, ...)
    """
    if not isinstance(name, str):
        raise ValueError(f"params: a param's name must be a string; got {name!r}")
    if name in RESERVED_PARAMS:
        fixed = (f"; as an option it is the same for every run: Experiment(..., {name}=...)"
                 if name in (*COMPILE_OPTIONS, *FIT_OPTIONS) else "")
        raise ValueError(f"params: {name!r} is a column of the experiment's results; give "
                         f"the param another name{fixed} (reserved: "
                         f"{', '.join(RESERVED_PARAMS)})")
    if isinstance(candidates, Range):
        return candidates
    if isinstance(candidates, (list, tuple)) and len(candidates) > 0:
        return list(candidates)
    raise ValueError(f"params[{name!r}] must be a non-empty list of candidates or an "
                     f"xb.space range (uniform, loguniform, integers); got {candidates!r}")
