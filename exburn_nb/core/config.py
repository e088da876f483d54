"""``FitConfig`` and ``CompileConfig``: every ``fit`` and every ``compile`` option, each in one
frozen, validated, JSON-ready value.

A run is data: the same config (and seed) gives the same run, and a saved model records
the config of each run that trained it. ``fit``, ``Trainer``, ``Runner`` and the dashboard
all take one; keyword arguments still work and build one.

Example:
    >>> cfg = FitConfig(epochs=5, batch_size=64, lr_schedule=("cosine", 1e-3, 1e-5), seed=0)
    >>> FitConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.replace(epochs=10).epochs
    10
    >>> FitConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1; got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ..base.checks import (
    check_int,
    check_number,
    check_optional_number,
    check_processes,
    check_seed,
)
from ..base.vocabulary import COMPILE_FILE_KEYS, DEVICES, LOSSES, OPTIMIZERS, PRECISIONS
from .optim import check_schedule


@dataclass(frozen=True)
class FitConfig:
    """Every option of one ``fit`` run (the data, callbacks and display are arguments).

    Attributes:
        epochs: epochs to train (0 trains nothing).
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: draw a new sample order every epoch.
        lr_schedule: ``("step", base, step_size, gamma)``, ``("exponential", base,
            gamma)``, ``("cosine", base, min_lr)`` or a callable ``epoch -> lr`` (epochs
            from 0 within the run; a callable does not go to JSON).
        clip_norm: rescale gradients to this global L2 norm at most.
        clip_value: clamp each gradient element to ``[-clip_value, clip_value]`` (first).
        weight_decay: L2 coefficient for this run (None keeps the model's).
        accumulate_gradients: batches per optimizer step.
        accuracy: also compute classification accuracy (and ``val_accuracy``).
        nesterov: Nesterov momentum (optimizer ``"sgd"`` only).
        terminate_on_nan: stop before a step whose loss, gradients or updated weights
            are not finite, keeping the last finite weights.
        check_data: refuse non-finite values in the data before the first step.
        compile: capture the whole training step with ``torch.compile`` (see
            :mod:`exburn_nb.train.captured`).
        precision: ``"fp32"`` or ``"bf16"`` (autocast).
        seed: seeds the run's shuffle order and its random draws (dropout), so the
            same seed gives the same run; None draws from torch's global generator.
        run_dir: a run directory the run writes its rows to as it goes, and whose
            ``STOP`` file stops it (see :class:`~exburn_nb.train.callbacks.RunDirectory`;
            watch it with ``xb.widgets.watch(run_dir)``); None writes none.
        processes: data-parallel ranks (``torch.distributed``); ``batch_size`` stays the
            global batch, split evenly across them (it must divide).
        backend: ``"auto"`` (gloo on CPU, nccl on CUDA), ``"gloo"`` or ``"nccl"``.
        start_method: how the ranks are started: ``"fork"`` (notebooks) or ``"spawn"``.
        sync_batchnorm: with several processes, BatchNorm layers normalise with the
            global batch's statistics (``SyncBatchNorm``, models on the GPU only)
            instead of each rank's own.
    """

    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True
    lr_schedule: Any = None
    clip_norm: float | None = None
    clip_value: float | None = None
    weight_decay: float | None = None
    accumulate_gradients: int = 1
    accuracy: bool = False
    nesterov: bool = False
    terminate_on_nan: bool = True
    check_data: bool = True
    compile: bool = False
    precision: str = "fp32"
    seed: int | None = None
    run_dir: str | None = None
    processes: int = 1
    backend: str = "auto"
    start_method: str = "fork"
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 0)
        check_int("batch_size", self.batch_size, 1)
        check_int("accumulate_gradients", self.accumulate_gradients, 1)
        for name in ("shuffle", "accuracy", "nesterov", "terminate_on_nan", "check_data",
                     "compile", "sync_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        for name in ("clip_norm", "clip_value"):
            object.__setattr__(self, name, check_optional_number(name, getattr(self, name),
                                                                 positive=True))
        object.__setattr__(self, "weight_decay",
                           check_optional_number("weight_decay", self.weight_decay))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; "
                             f"got {self.precision!r}")
        check_seed(self.seed)
        if self.run_dir is not None:
            if not isinstance(self.run_dir, (str, os.PathLike)) or not str(self.run_dir):
                raise ValueError(f"run_dir must be None or a directory path (str or Path); "
                                 f"got {self.run_dir!r}")
            object.__setattr__(self, "run_dir", str(self.run_dir))
        check_processes(self.processes, self.batch_size, self.backend, self.start_method)
        if isinstance(self.lr_schedule, list):
            object.__setattr__(self, "lr_schedule", tuple(self.lr_schedule))
        check_schedule(self.lr_schedule)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_options(cls, config: FitConfig | None = None, **options: Any) -> FitConfig:
        """``config`` (or the defaults) with ``options`` applied; unknown names are refused.

        Example:
            >>> FitConfig.from_options(epochs=3).epochs
            3
        """
        if config is not None and not isinstance(config, FitConfig):
            raise ValueError(f"config must be an xb.FitConfig or None; got "
                             f"{type(config).__name__}")
        _check_names(options, cls, "fit")
        if config is None:  # built and validated once, not as defaults first
            return cls(**options)
        return dataclasses.replace(config, **options) if options else config

    def replace(self, **options: Any) -> FitConfig:
        """A copy with ``options`` changed (validated again)."""
        return FitConfig.from_options(self, **options)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """Plain JSON-ready values; a callable schedule becomes ``{"callable": name}``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # all plain values
        schedule = self.lr_schedule
        if callable(schedule):
            data["lr_schedule"] = {"callable": getattr(schedule, "__qualname__", repr(schedule))}
        elif schedule is not None:
            data["lr_schedule"] = list(schedule)
        return data

    @classmethod
    def from_dict(cls, data: dict, lr_schedule: Callable | None = None) -> FitConfig:
        """Rebuild from :meth:`to_dict`. A config saved with a callable schedule needs that
        callable again (``lr_schedule=``); every value is validated.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a fit config must be a dict; got {type(data).__name__}")
        data = dict(data)
        schedule = data.get("lr_schedule")
        if isinstance(schedule, dict):
            if lr_schedule is None:
                raise ValueError(f"this run used the callable lr_schedule "
                                 f"{schedule.get('callable')!r}, which files cannot hold; "
                                 "pass it again: lr_schedule=<the function>")
            data["lr_schedule"] = lr_schedule
        elif isinstance(schedule, list):
            data["lr_schedule"] = tuple(schedule)
        return cls.from_options(None, **data)


@dataclass(frozen=True)
class CompileConfig:
    """Every option of ``xb.compile`` in one frozen, validated value (the compile-time
    counterpart of :class:`FitConfig`); :data:`COMPILE_OPTIONS` lists its names.

    Attributes:
        loss: ``"cross_entropy"``, ``"mse"`` or ``"binary_cross_entropy"``.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``.
        learning_rate: the optimizer's learning rate (> 0).
        device: ``"cpu"``, ``"gpu"`` or ``"auto"``.
        weight_decay: the L2 coefficient (decoupled for adamw).
        input_shape: for a ``torch.nn.Module``: ``(None, d1, ...)``; None for specs.
        seed: seeds torch before the weights are initialised.

    Example:
        >>> CompileConfig(optimizer="sgd", learning_rate=0.1).replace(seed=0).seed
        0
        >>> CompileConfig(loss="hinge")
        Traceback (most recent call last):
        ...
        ValueError: loss must be one of cross_entropy, mse, binary_cross_entropy; got 'hinge'
    """

    loss: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    device: str = "cpu"
    weight_decay: float = 0.0
    input_shape: tuple | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("loss", LOSSES), ("optimizer", OPTIMIZERS),
                              ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got "
                                 f"{getattr(self, name)!r}")
        object.__setattr__(self, "learning_rate",
                           check_number("learning_rate", self.learning_rate, positive=True))
        object.__setattr__(self, "weight_decay", check_number("weight_decay", self.weight_decay))
        shape = self.input_shape
        if shape is not None:
            if (not isinstance(shape, (tuple, list)) or len(shape) < 2 or shape[0] is not None
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                               for d in shape[1:])):
                raise ValueError("input_shape must be None or (None, d1, ...) with positive "
                                 f"integer sizes, e.g. (None, 784); got {shape!r}")
            object.__setattr__(self, "input_shape", tuple(shape))
        check_seed(self.seed)

    @classmethod
    def from_options(cls, config: CompileConfig | None = None, **options: Any) -> CompileConfig:
        """``config`` (or the defaults) with ``options`` applied; unknown names are refused."""
        _check_names(options, cls, "compile")
        return dataclasses.replace(config or cls(), **options)

    def replace(self, **options: Any) -> CompileConfig:
        """A copy with ``options`` changed (validated again)."""
        return CompileConfig.from_options(self, **options)

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # all plain values
        if self.input_shape is not None:
            data["input_shape"] = list(self.input_shape)
        return data


FIT_OPTIONS = tuple(f.name for f in fields(FitConfig))
COMPILE_OPTIONS = tuple(f.name for f in fields(CompileConfig))
assert set(COMPILE_OPTIONS) - {"seed"} == set(COMPILE_FILE_KEYS)  # what model files record


def _check_names(options: dict, cls: type, what: str) -> None:
    """A ``TypeError`` with a "did you mean" for the first option ``cls`` does not have."""
    names = [f.name for f in fields(cls)]
    unknown = [k for k in options if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"unknown {what} option {unknown[0]!r}{hint} The options are: "
                        f"{', '.join(names)}")
