"""Argument checks shared by the whole package: one place for each rule, and every error
names the argument, the value and what was expected.

Example:
    >>> check_int("epochs", 3, 0)
    3
    >>> check_int("batch_size", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1; got 0
    >>> check_number("learning_rate", 1e-3, positive=True)
    0.001
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from .vocabulary import BACKENDS, START_METHODS

MAX_SEED = 2**64 - 1  # what torch.manual_seed takes


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as a plain int if it is an integer in ``[minimum, maximum]`` (NumPy
    integers count, bools do not)."""
    if (isinstance(value, bool) or not isinstance(value, Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


def check_number(name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a float if it is a finite real number ``>= 0`` (``> 0`` if ``positive``)."""
    try:  # an integer past float's range is not a finite float either
        number = math.nan if isinstance(value, bool) or not isinstance(value, Real) else float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; "
                         f"got {value!r:.100}")
    return number


def check_optional_number(name: str, value: Any, positive: bool = False) -> float | None:
    """``None``, or :func:`check_number` (the message says None is allowed)."""
    if value is None:
        return None
    try:
        return check_number(name, value, positive)
    except ValueError:
        raise ValueError(f"{name} must be None or a finite number "
                         f"{'> 0' if positive else '>= 0'}; got {value!r}") from None


def check_seed(value: Any, name: str = "seed") -> int | None:
    """``None`` or an integer in ``[0, 2**64 - 1]``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be None or an integer in [0, 2**64 - 1]; got {value!r}")
    return value


def check_processes(processes: Any, batch_size: int, backend: Any, start_method: Any) -> int:
    """The data-parallel options of a run: ``processes`` ranks share the global
    ``batch_size`` evenly, on a known ``backend``, started by a known ``start_method``.

    Example:
        >>> check_processes(2, 32, "auto", "fork")
        2
        >>> check_processes(3, 32, "auto", "fork")
        Traceback (most recent call last):
        ...
        ValueError: batch_size must divide evenly across processes=3 (it is the global batch); got 32 (try 30 or 33)
    """
    processes = check_int("processes", processes, 1)
    if batch_size % processes:
        lower = batch_size - batch_size % processes
        raise ValueError(f"batch_size must divide evenly across processes={processes} (it is "
                         f"the global batch); got {batch_size} (try "
                         f"{f'{lower} or ' if lower else ''}{lower + processes})")
    for name, value, allowed in (("backend", backend, BACKENDS),
                                 ("start_method", start_method, START_METHODS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return processes
