"""Checks for the values a model file holds, before any of them is applied.

A file's checksum proves it is what a writer wrote, not that the writer was honest: every
value is checked here (types, ranges, shapes) so that a load either applies a file that
the training loop can use as is, or raises a ``ValueError`` and changes nothing. Each
check raises a ``ValueError`` that says which value is wrong and what was expected; the
caller adds the file's name.

Example:
    >>> check_history([{"epoch": 1, "loss": 0.5}],
    ...               {"epoch": [1], "batch": [1], "step": [1], "loss": [0.5], "lr": [0.1],
    ...                "run": [1]})
    >>> check_history([{"loss": 0.5}], {})
    Traceback (most recent call last):
    ...
    ValueError: history row 0 has no 'epoch'
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

from ..base.vocabulary import BATCH_COLUMNS, LOSSES, OPTIMIZERS
from ..base.vocabulary import COMPILE_FILE_KEYS as COMPILE_KEYS

# per optimizer: the state keys every stepped parameter has, and those it may have
OPTIMIZER_STATE = {
    "adam": ({"step", "exp_avg", "exp_avg_sq"}, {"max_exp_avg_sq"}),
    "adamw": ({"step", "exp_avg", "exp_avg_sq"}, {"max_exp_avg_sq"}),
    "sgd": ({"momentum_buffer"}, set()),
    "rmsprop": ({"step", "square_avg"}, {"momentum_buffer", "grad_avg"}),
}
# settings that describe this machine's kernels, not the training: always the model's own
DEVICE_SETTINGS = ("fused", "foreach", "capturable", "differentiable")
# settings a file must hold as the model has them: the kit's update rules are written
# for its own values (amsgrad, centered and RMSprop's momentum would need state it does
# not keep; maximize and dampening arithmetic its captured step does not do), and
# decoupled_weight_decay is what tells AdamW from Adam
FIXED_SETTINGS = ("amsgrad", "maximize", "centered", "dampening", "decoupled_weight_decay")
UNIT_SETTINGS = ("momentum", "alpha", "dampening")  # numbers in [0, 1]
EPOCH_RANGES = {"loss": None, "val_loss": None, "accuracy": (0.0, 1.0),
                "val_accuracy": (0.0, 1.0), "lr": (0.0, math.inf), "seconds": (0.0, math.inf),
                "samples_per_s": (0.0, math.inf)}


def is_int(value: Any) -> bool:
    """Whether ``value`` is a plain integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def real(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False) -> float:
    """``value`` as a float; raise unless it is a finite real in ``[low, high]``."""
    if (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
            or value > high or value < low or (low_open and value == low)):
        if high == math.inf:
            bounds = f"{'>' if low_open else '>='} {low:g}" if low > -math.inf else ""
        else:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number {bounds}".rstrip() + f"; got {value!r}")
    return float(value)


def check_compile(settings: Any) -> dict:
    """The compile settings: loss, optimizer, learning_rate, weight_decay, device, input_shape."""
    if not isinstance(settings, dict) or set(settings) != set(COMPILE_KEYS):
        keys = sorted(settings) if isinstance(settings, dict) else settings
        raise ValueError(f"compile settings must have exactly the keys {list(COMPILE_KEYS)}; "
                         f"got {keys!r}")
    if settings["loss"] not in LOSSES:
        raise ValueError(f"compile loss must be one of {LOSSES}; got {settings['loss']!r}")
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"compile optimizer must be one of {OPTIMIZERS}; "
                         f"got {settings['optimizer']!r}")
    real("compile learning_rate", settings["learning_rate"], 0.0, low_open=True)
    real("compile weight_decay", settings["weight_decay"], 0.0)
    if not isinstance(settings["device"], str):
        raise ValueError(f"compile device must be a string; got {settings['device']!r}")
    shape = settings["input_shape"]
    if shape is not None and not (isinstance(shape, list) and len(shape) >= 2 and shape[0] is None
                                  and all(is_int(d) and d >= 1 for d in shape[1:])):
        raise ValueError(f"compile input_shape must be null or [null, d1, ...] with positive "
                         f"integer sizes; got {shape!r}")
    return settings


def check_frozen(names: Any) -> list[str]:
    """The frozen layers: a list of names."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"frozen must be a list of layer names (strings); got {names!r}")
    return names


def check_history(epochs: Any, batches: dict[str, list], runs: Any = ()) -> None:
    """Epoch rows (plain scalars, ``epoch`` counting up from 1), batch columns and runs.

    Batch columns: every one of ``BATCH_COLUMNS`` (then any logged extras, floats),
    equally long; epoch and batch integers >= 1, step and run integers >= 0, lr a finite
    number >= 0, loss any float (a run with ``terminate_on_nan=False`` may record a
    non-finite one). Runs: ``{"run": int, "config": object}`` with increasing ids.
    """
    if not isinstance(runs, (list, tuple)):
        raise ValueError(f"runs must be a list; got {type(runs).__name__}")
    last_run = 0
    for i, entry in enumerate(runs):
        if not (isinstance(entry, dict) and set(entry) - {"compile_seconds"} == {"run", "config"}
                and is_int(entry["run"]) and entry["run"] > last_run
                and isinstance(entry["config"], dict)):
            raise ValueError(f"runs[{i}] must be {{'run': an increasing integer, 'config': "
                             f"an object, optionally 'compile_seconds': a number}}; got "
                             f"{entry!r:.200}")
        if "compile_seconds" in entry:
            real(f"runs[{i}].compile_seconds", entry["compile_seconds"], 0.0)
        last_run = entry["run"]
    if not isinstance(epochs, list):
        raise ValueError(f"history must be a list of epoch rows; got {type(epochs).__name__}")
    last = 0
    for i, row in enumerate(epochs):
        if not isinstance(row, dict):
            raise ValueError(f"history row {i} must be an object; got {row!r}")
        if "epoch" not in row:
            raise ValueError(f"history row {i} has no 'epoch'")
        epoch = row["epoch"]
        if not is_int(epoch) or epoch <= last:
            raise ValueError(f"history row {i}: epoch must be an integer above {last} (epochs "
                             f"count up from 1); got {epoch!r}")
        last = epoch
        for key, value in row.items():
            if key in EPOCH_RANGES:
                low, high = EPOCH_RANGES[key] or (-math.inf, math.inf)
                real(f"history row {i} {key!r}", value, low, high)
            elif key != "epoch" and not (
                    value is None or isinstance(value, (str, bool))
                    or (isinstance(value, Real) and math.isfinite(value))):
                raise ValueError(f"history row {i} {key!r} must be a finite number, a string, "
                                 f"a bool or null; got {value!r}")
    if not set(BATCH_COLUMNS) <= set(batches):
        raise ValueError(f"batch history must have the columns {list(BATCH_COLUMNS)}; "
                         f"got {sorted(batches)}")
    lengths = {c: len(v) for c, v in batches.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"batch history columns must be equally long; got lengths {lengths}")
    for column, low in (("epoch", 1), ("batch", 1), ("step", 0), ("run", 0)):
        bad = [v for v in batches[column] if not (math.isfinite(v) and v == int(v) and v >= low)]
        if bad:
            raise ValueError(f"batch history {column!r} must hold integers >= {low}; "
                             f"got {bad[0]!r}")
    bad = [v for v in batches["lr"] if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"batch history 'lr' must hold finite numbers >= 0; got {bad[0]!r}")


def check_optimizer_groups(saved: Any, current: list[dict]) -> list[dict]:
    """The file's param groups, checked against the model's and merged onto them.

    Settings this torch does not know are dropped; the device settings (fused, foreach,
    ...) stay the model's; every other value must be of the model's kind and in range.
    """
    if not isinstance(saved, list) or len(saved) != len(current):
        got = f"{len(saved)} groups" if isinstance(saved, list) else f"{saved!r:.100}"
        raise ValueError(f"optimizer_groups must be a list of {len(current)} group(s); "
                         f"got {got}")
    merged = []
    for i, (group, own) in enumerate(zip(saved, current, strict=True)):
        if not isinstance(group, dict):
            raise ValueError(f"optimizer group {i} must be an object; got {group!r:.200}")
        ids = group.get("params")
        if (not isinstance(ids, list) or len(ids) != len(own["params"])
                or not all(is_int(p) and p >= 0 for p in ids) or len(set(ids)) != len(ids)):
            raise ValueError(f"optimizer group {i} params must be {len(own['params'])} distinct "
                             f"integers >= 0; got {ids!r:.200}")
        out = {k: v for k, v in own.items() if k != "params"}
        for key, value in group.items():
            if key == "params" or key not in own or key in DEVICE_SETTINGS:
                continue
            if (key in FIXED_SETTINGS or key == "momentum" and "alpha" in own) and (
                    value != own[key]):
                raise ValueError(f"optimizer group {i} {key!r} must be {own[key]!r}, as the "
                                 f"model's optimizer has it; got {value!r:.100}")
            out[key] = _group_value(f"optimizer group {i} {key!r}", key, value, own[key])
        merged.append({**out, "params": list(ids)})
    return merged


def _group_value(name: str, key: str, value: Any, own: Any) -> Any:
    if key == "betas":
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(
                not isinstance(b, bool) and isinstance(b, Real) and 0 <= b < 1 for b in value)):
            raise ValueError(f"{name} must be two numbers in [0, 1); got {value!r:.100}")
        return tuple(value)
    if isinstance(own, bool) or own is None:
        if not isinstance(value, bool) and not (own is None and value is None):
            raise ValueError(f"{name} must be true or false; got {value!r}")
        return value
    if key == "lr":
        real(name, value, 0.0, low_open=True)
    elif key in UNIT_SETTINGS:
        real(name, value, 0.0, 1.0)
    else:
        real(name, value, 0.0)
    return value  # as written (an int stays an int), so a re-save is byte-identical


def check_optimizer_state(optimizer: str, state: dict[int, dict], groups: list[dict],
                          param_shapes: list[tuple]) -> None:
    """Per-parameter optimizer state: the optimizer's keys, floating tensors of the
    parameter's shape, and ``step`` a whole number >= 0.

    ``param_shapes`` are the model's parameters in optimizer order; ``groups`` the
    checked param groups, whose ids map state entries onto those parameters.
    """
    ids = [p for g in groups for p in g["params"]]
    shapes = dict(zip(ids, param_shapes, strict=True))
    required, optional = OPTIMIZER_STATE[optimizer]
    for idx, values in state.items():
        if idx not in shapes:
            raise ValueError(f"optimizer state {idx} belongs to no parameter (the groups "
                             f"hold {sorted(shapes)})")
        keys = set(values)
        if not required <= keys <= required | optional:
            raise ValueError(f"optimizer state {idx} must have the {optimizer} keys "
                             f"{sorted(required)} (optionally {sorted(optional)}); "
                             f"got {sorted(keys)}")
        for key, value in values.items():
            name = f"optimizer state {idx} {key!r}"
            if key == "step":
                step = value.item() if isinstance(value, torch.Tensor) and value.dim() == 0 \
                    and value.is_floating_point() else value
                if real(name, step, 0.0) != int(step):
                    raise ValueError(f"{name} must be a whole number >= 0; got {step!r}")
            elif value is None and key == "momentum_buffer":
                continue
            elif (not isinstance(value, torch.Tensor) or not value.is_floating_point()
                  or tuple(value.shape) != tuple(shapes[idx])):
                got = (f"{value.dtype} of shape {tuple(value.shape)}"
                       if isinstance(value, torch.Tensor) else repr(value))
                raise ValueError(f"{name} must be a floating tensor of its parameter's shape "
                                 f"{tuple(shapes[idx])}; got {got}")
