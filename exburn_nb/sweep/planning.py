"""Planning a sweep: which (model, config) pairs can share one stacked step.

:func:`plan` groups members by what must be equal to share a step (the architecture,
loss, optimizer kind, epochs, batch size, ...) and splits groups over a memory budget
(:data:`MEMORY_BUDGET` by default, see :func:`memory_budget_bytes`);
:mod:`exburn_nb.sweep.engine` trains each group as one stacked ensemble. Inside a group
each member keeps its own learning rate, weight decay, schedule, clipping thresholds,
Nesterov flag, dropout rates and seed, and is the same computation as
``xb.fit(model, data, config)``: the same initial weights, batch order, dropout masks and
optimizer math, to float32 round-off. Each model ends with its own weights, optimizer
state, ``history``, ``batch_history`` and ``runs`` row, as a separate ``fit`` leaves
them. A member whose loss, gradients or update is not finite is frozen and marked
(``stop_reasons``) while the others go on.

Scope: a member equals its own ``fit`` exactly (dropout masks included) when its config
has a ``seed``; without one, each member draws a seed from torch's generator as ``fit``
does, but its dropout masks then differ from a separate run's (which draws them from the
global generator). Histories grow live (rows are added as each batch ends, readable from
another thread); the models' weights and optimizer state are written back when the run
ends (however it ends), so a prediction made mid-run sees the initial weights. ``fit``'s
callbacks are not taken: watch with ``StackedTrainer.on_epoch_end`` and the histories,
steer with ``stop`` / ``stop_member``. Specs of dense, dropout, activation and flatten
layers are stacked; other layers, DataLoader data and bf16 run with ``xb.fit``
(:func:`plan` says why).

Example:
    >>> import exburn_nb as xb
    >>> spec = xb.input("input", shape=(None, 64)).dense(32, activation="relu").dense(10)
    >>> models = [xb.compile(spec, learning_rate=lr, seed=0) for lr in (1e-3, 3e-3)]
    >>> sweep_plan = plan(models, [xb.FitConfig(epochs=2, seed=0)] * 2)
    >>> sweep_plan.groups, sweep_plan.sequential
    ([[0, 1]], {})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

from ..core.config import FitConfig
from ..core.model import Model
from .stacked import member_bytes, spec_key, unstackable_reason

SHARED_OPTIONS = ("epochs", "batch_size", "shuffle", "accumulate_gradients", "accuracy",
                  "terminate_on_nan")
# what a stacked group may use by default ("auto"): about what a PyTorch process holds before
# it trains anything, so a stacked group at most about doubles the memory of one run at a
# time; members whose estimates (member_bytes) do not fit two at once train one by one
MEMORY_BUDGET = 256 * 2**20


def memory_budget_bytes(memory_budget: Any) -> int | None:
    """The bytes a stacked group may use: ``"auto"`` is :data:`MEMORY_BUDGET` (256 MiB),
    an integer is a number of bytes, ``None`` is no limit.

    Example:
        >>> memory_budget_bytes("auto") == MEMORY_BUDGET, memory_budget_bytes(10**9)
        (True, 1000000000)
    """
    if memory_budget is None:
        return None
    if isinstance(memory_budget, str) and memory_budget == "auto":
        return MEMORY_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, Integral) \
            or memory_budget < 1:
        raise ValueError(f"memory_budget must be 'auto', None or a number of bytes >= 1; "
                         f"got {memory_budget!r}")
    return int(memory_budget)


@dataclass
class SweepPlan:
    """Which members train together and why the others run alone.

    Attributes:
        groups: lists of member indices, each trained as one stacked ensemble.
        sequential: member index -> why it runs on its own (``xb.fit``).
        keys: for each group, what its members share (architecture, optimizer, ...).
    """

    groups: list[list[int]] = field(default_factory=list)
    sequential: dict[int, str] = field(default_factory=dict)
    keys: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        """One line per group and per member running alone, for the user."""
        lines = [f"stacked group {i + 1}: members {g} ({len(g)} at once; shared "
                 f"{', '.join(f'{k}={v}' for k, v in key.items() if k != 'spec')})"
                 for i, (g, key) in enumerate(zip(self.groups, self.keys, strict=True))]
        lines += [f"member {m} runs alone: {why}" for m, why in sorted(self.sequential.items())]
        return "\n".join(lines)


def group_key(model: Model, config: FitConfig) -> tuple[dict | None, str | None]:
    """What a member must share with the others of its group, or why it cannot be stacked."""
    why = unstackable_reason(model)
    if why is None and config.precision != "fp32":
        why = f"precision={config.precision!r} (the stacked engine trains in fp32)"
    if why is None and config.nesterov and model.optimizer != "sgd":
        why = f"nesterov=True needs optimizer 'sgd'; it uses {model.optimizer!r}"
    if why is not None:
        return None, why
    key = {"spec": spec_key(model), "loss": model.loss_function,
           "optimizer": model.optimizer, "device": model.device}
    key.update({name: getattr(config, name) for name in SHARED_OPTIONS})
    return key, None


def plan(models: Sequence[Model], configs: Sequence[FitConfig],
         memory_budget: int | str | None = "auto") -> SweepPlan:
    """Group members that can share a stacked step; split groups over ``memory_budget``.

    Args:
        models: compiled, untrained models built from specs (one per member).
        configs: one :class:`FitConfig` per member.
        memory_budget: bytes a group may use, estimated per member by ``member_bytes``
            (parameters, gradients, optimizer state and one batch's activations; the data
            is shared): ``"auto"`` (:data:`MEMORY_BUDGET`, 256 MiB), a number of bytes, or
            None (no limit).

    Returns:
        A :class:`SweepPlan`. A member alone in its group runs sequentially.

    Example:
        >>> spec = xb.input("input", shape=(None, 4)).dense(2)
        >>> ms = [xb.compile(spec), xb.compile(spec), xb.compile(spec, optimizer="sgd")]
        >>> plan(ms, [xb.FitConfig()] * 3).sequential  # doctest: +ELLIPSIS
        {2: 'no other member shares its ...'}
    """
    check_members(models, configs)
    memory_budget = memory_budget_bytes(memory_budget)
    keyed: dict[str, list[int]] = {}
    keys: dict[str, dict] = {}
    result = SweepPlan()
    for i, (model, config) in enumerate(zip(models, configs, strict=True)):
        key, why = group_key(model, config)
        if key is None:
            result.sequential[i] = why
            continue
        keyed.setdefault(repr(key), []).append(i)
        keys[repr(key)] = key
    for name, members in keyed.items():
        if len(members) == 1:
            key = keys[name]
            result.sequential[members[0]] = (
                "no other member shares its architecture, loss, optimizer, device and "
                + ", ".join(f"{k}={key[k]}" for k in SHARED_OPTIONS))
            continue
        size = len(members)
        if memory_budget is not None:
            one = member_bytes(models[members[0]], configs[members[0]].batch_size)
            size = max(1, min(size, memory_budget // one))
        for lo in range(0, len(members), size):
            chunk = members[lo:lo + size]
            if len(chunk) == 1:
                result.sequential[chunk[0]] = (
                    f"the memory budget ({memory_budget:,} bytes) holds one member "
                    f"({member_bytes(models[chunk[0]], configs[chunk[0]].batch_size):,} bytes)")
            else:
                result.groups.append(chunk)
                result.keys.append(dict(keys[name]))
    return result


def check_members(models: Sequence[Model], configs: Sequence[FitConfig]) -> None:
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of compiled models; got {models!r}")
    if not isinstance(configs, (list, tuple)) or len(configs) != len(models):
        raise ValueError(f"configs must be a list of one FitConfig per model ({len(models)}); "
                         f"got {configs!r}")
    for i, (m, c) in enumerate(zip(models, configs, strict=True)):
        if not isinstance(m, Model):
            raise ValueError(f"models[{i}] must be a compiled exburn_nb Model; got "
                             f"{type(m).__name__}")
        if not isinstance(c, FitConfig):
            raise ValueError(f"configs[{i}] must be an xb.FitConfig; got {type(c).__name__}")
