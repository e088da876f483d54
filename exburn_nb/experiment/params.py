"""An experiment's params: the space, where each name goes, and one run's model and config.

A searched or fixed name is a compile option (to ``xb.compile``), a fit option (to the
run's :class:`~exburn_nb.core.config.FitConfig`) or, for a ``build`` function, a name
that ``build(params)`` reads. The option names come from :mod:`exburn_nb.core.config`.

Example:
    >>> spec = xb.input("input", shape=(None, 4)).dense(2, name="output")
    >>> space = ParamSpace(spec, {"learning_rate": [0.1, 0.01], "batch_size": [8]}, epochs=2)
    >>> space.routes
    {'learning_rate': 'compile', 'batch_size': 'fit'}
    >>> space.grid()
    [{'learning_rate': 0.1, 'batch_size': 8}, {'learning_rate': 0.01, 'batch_size': 8}]
    >>> model, config = space.prepare(space.grid()[1], seed=3)
    >>> model.learning_rate, config.batch_size, config.epochs, config.seed
    (0.01, 8, 2, 3)
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
from torch import nn

from ..base.checks import check_int
from ..core.config import COMPILE_OPTIONS, FIT_OPTIONS, CompileConfig, FitConfig
from ..core.model import Model, compile
from ..core.spec import Spec
from .space import Range, check_candidates

# what the experiment sets itself: each run's seed, and the input shape of what build gives
SET_PER_RUN = ("seed", "input_shape")
COMPILE_PARAMS = tuple(n for n in COMPILE_OPTIONS if n not in SET_PER_RUN)
FIT_PARAMS = tuple(n for n in FIT_OPTIONS if n not in (*COMPILE_PARAMS, *SET_PER_RUN))
# the most runs a grid may have: a larger one is refused (naming its size) before it is built
MAX_GRID_RUNS = 100_000


class UsedNames(dict):
    """A dict that records which keys a ``build`` function reads.

    Example:
        >>> probe = UsedNames({"units": 8, "depth": 2})
        >>> probe["units"], sorted(probe.used)
        (8, ['units'])
    """

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.used.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def _all(self) -> None:
        self.used.update(self.keys())

    def keys(self):  # noqa: ANN201 - ``**params`` and iteration read every name
        self.used.update(super().keys())
        return super().keys()

    def items(self):  # noqa: ANN201
        self._all()
        return super().items()

    def __iter__(self):  # noqa: ANN204
        self._all()
        return super().__iter__()


def _first_and_last(candidates: list | Range) -> list:
    """The values checked before any run: every listed one, or a range's bounds."""
    return candidates if isinstance(candidates, list) else [candidates.low, candidates.high]


class ParamSpace:
    """The params of an experiment, checked and routed, and how a run is made from them.

    Args:
        build: a spec, a compiled :class:`Model` (rebuilt per run with fresh weights), a
            ``torch.nn.Module`` (copied per run), or a function ``params -> spec | Model``.
        params: name -> a list of candidates or an ``xb.space`` range (a name that is a
            column of the results, :data:`~exburn_nb.experiment.runs.RESERVED_PARAMS`,
            is refused).
        epochs: epochs per run (unless ``epochs`` is a param).
        **fixed: fixed compile and fit options, the same for every run.

    Attributes:
        params: name -> candidates (lists or ranges).
        routes: name -> ``"compile"``, ``"fit"`` or ``"build"``.
        compile_options: the fixed compile options.
        config: the fit config every run starts from.

    Example:
        >>> ParamSpace(lambda p: None, {"colour": ["red"]}, epochs=1)
        Traceback (most recent call last):
        ...
        ValueError: params: 'colour' is neither a compile option, a fit option, nor a name that build(params) reads
    """

    def __init__(self, build: Any, params: dict | None, epochs: int = 10, **fixed: Any):
        if not (callable(build) or isinstance(build, (Model, nn.Module, Spec))):
            raise ValueError(f"build must be a spec, a compiled Model or a function params -> "
                             f"spec; got {type(build).__name__}")
        self.build = build
        self.is_function = callable(build) and not isinstance(build, (Model, nn.Module, Spec))
        if not isinstance(params, dict) or not params:
            raise ValueError(f"params must be a non-empty dict name -> candidates; got {params!r}")
        self.params = {name: check_candidates(name, c) for name, c in params.items()}
        self.compile_options, fit = {}, {}
        for name, value in fixed.items():
            route = self._route_of(name)
            if route == "build":
                raise ValueError(f"fit_options: {name!r} is neither a compile option "
                                 f"({', '.join(COMPILE_PARAMS)}) nor a fit option "
                                 f"({', '.join(FIT_PARAMS)})")
            (self.compile_options if route == "compile" else fit)[name] = value
        CompileConfig.from_options(**self.compile_options)
        self.config = FitConfig.from_options(epochs=check_int("epochs", epochs, 0), **fit)
        self.routes = self._routes()

    @staticmethod
    def _route_of(name: str) -> str:
        return "compile" if name in COMPILE_PARAMS else "fit" if name in FIT_PARAMS else "build"

    def _routes(self) -> dict[str, str]:
        """Where each param goes; checks the values of compile and fit params."""
        routes = {}
        for name, candidates in self.params.items():
            routes[name] = route = self._route_of(name)
            for value in _first_and_last(candidates):
                if route == "compile":
                    CompileConfig.from_options(**{name: value})
                elif route == "fit":
                    self.config.replace(**{name: value})
        build_names = [n for n, r in routes.items() if r == "build"]
        if build_names and not self.is_function:
            raise ValueError(f"params: {build_names[0]!r} is neither a compile option "
                             f"({', '.join(COMPILE_PARAMS)}) nor a fit option "
                             f"({', '.join(FIT_PARAMS)}), and build is not a function "
                             "params -> spec that could take it")
        if self.is_function:
            probe = UsedNames({n: _first_and_last(c)[0] for n, c in self.params.items()})
            self.build(probe)
            unused = [n for n in build_names if n not in probe.used]
            if unused:
                raise ValueError(f"params: {unused[0]!r} is neither a compile option, a fit "
                                 "option, nor a name that build(params) reads")
        return routes

    # ---------------------------------------------------------------- planning
    def grid_size(self) -> int:
        """How many combinations :meth:`grid` has (counted, not listed).

        Example:
            >>> ParamSpace(xb.input("input", shape=(None, 4)).dense(2),
            ...            {"batch_size": xb.space.integers(1, 10**7)}).grid_size()
            10000000
        """
        return math.prod(c.size() if isinstance(c, Range) else len(c)
                         for c in self.params.values())

    def grid(self) -> list[dict]:
        """Every combination of the candidates (ranges must be ``xb.space.integers``); a
        grid of more than :data:`MAX_GRID_RUNS` combinations is refused before it is built."""
        size = self.grid_size()
        if size > MAX_GRID_RUNS:
            sizes = " x ".join(f"{n} {c.size() if isinstance(c, Range) else len(c)}"
                               for n, c in self.params.items())
            raise ValueError(f"search='grid': the grid has {size} runs ({sizes}), more than "
                             f"MAX_GRID_RUNS={MAX_GRID_RUNS}; give fewer candidates, or use "
                             "search='random' or 'optuna' with n_trials")
        names = list(self.params)
        values = [c.values() if isinstance(c, Range) else c for c in self.params.values()]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def draw(self, seed: int, number: int) -> dict:
        """The params of random run ``number`` of an experiment seeded ``seed``.

        Example:
            >>> space = ParamSpace(xb.input("input", shape=(None, 4)).dense(2),
            ...                    {"learning_rate": xb.space.loguniform(1e-4, 1e-1)})
            >>> space.draw(0, 5) == space.draw(0, 5) != space.draw(0, 6)
            True
        """
        rng = np.random.default_rng([seed, number])
        return {n: c.draw(rng) if isinstance(c, Range) else c[int(rng.integers(len(c)))]
                for n, c in self.params.items()}

    # ---------------------------------------------------------------- one run
    def prepare(self, params: dict, seed: int) -> tuple[Model, FitConfig]:
        """A freshly built model (weights from ``seed``) and the config of a run."""
        compile_kw = {**self.compile_options}
        fit_kw = {}
        for name, value in params.items():
            route = self.routes.get(name, "build")
            if route == "compile":
                compile_kw[name] = value
            elif route == "fit":
                fit_kw[name] = value.tolist() if hasattr(value, "tolist") else value
        built = self.build(dict(params)) if self.is_function else self.build
        return _model(built, compile_kw, seed), self.config.replace(seed=seed, **fit_kw)


def _model(built: Any, compile_kw: dict, seed: int) -> Model:
    """Compile what ``build`` gave with ``compile_kw``; never train the caller's objects."""
    if isinstance(built, Model):
        # the model's own compile settings (its loss is ``loss_function``), then the run's
        base = {name: getattr(built, "loss_function" if name == "loss" else name)
                for name in COMPILE_PARAMS}
        if built.spec is not None:
            return compile(built.spec, seed=seed, **{**base, **compile_kw})
        # a torch module: the same layers (a deep copy), fresh weights from the run's seed
        model = compile(copy.deepcopy(built.module), input_shape=built.input_shape,
                        **{**base, **compile_kw})
        return model.reset_weights(seed)
    if isinstance(built, nn.Module):
        return compile(copy.deepcopy(built), **compile_kw).reset_weights(seed)
    return compile(built, seed=seed, **compile_kw)
