"""A run's members and an epoch's running sums, as the training loop keeps them.

A run has one member per model it trains (one for ``fit``, several for a stacked
engine); each keeps its own config, schedule, shuffle generator, run id, step count and
stop reason.

Example:
    >>> tally = EpochTally(2)
    >>> tally.add([0.5, 1.0], None, 4, [True, True]); tally.add([0.25, 2.0], None, 2, [True, False])
    >>> tally.done, tally.loss_sum(0), tally.loss_sum(1)
    ([6, 4], 2.5, 4.0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..base.vocabulary import StopReason
from ..core.config import FitConfig
from ..core.model import Model
from ..core.optim import Schedule


@dataclass(eq=False)
class Member:
    """One model's part of a run: its config, schedule, shuffle order and counters."""

    model: Model
    config: FitConfig
    schedule: Schedule | None
    generator: torch.Generator = field(default_factory=torch.Generator)
    run_id: int = 0
    step: int = 0
    active: bool = True
    stop_reason: StopReason | None = None


class EpochTally:
    """An epoch's running sums per member: samples done, losses, correct counts.

    A batch's losses are floats (read on the host already, by the loop or the engine) or
    a tensor of them, which stays on the device until :meth:`loss_sum` reads all the
    epoch's in one go; an epoch may hold both (a captured step's floats, an eager last
    batch's tensor)."""

    def __init__(self, size: int):
        self.start = time.perf_counter()
        self.done = [0] * size
        self.losses: list = []  # per batch: floats per member, or a tensor of them
        self.steps: list[tuple[int, list[bool]]] = []  # per batch: size, who stepped
        self.correct: torch.Tensor | None = None

    def add(self, losses: list[float] | torch.Tensor, correct: torch.Tensor | None,
            size: int, active: list[bool]) -> None:
        """Count one batch of ``size`` samples for the ``active`` members."""
        self.losses.append(losses)
        self.steps.append((size, active))
        done = self.done
        for m, a in enumerate(active):
            if a:
                done[m] += size
        if correct is not None:
            if not all(active):
                correct = correct * torch.tensor(active, dtype=correct.dtype,
                                                 device=correct.device)
            self.correct = correct if self.correct is None else self.correct + correct

    def loss_sum(self, member: int) -> float:
        """Member ``member``'s loss summed over its samples (one host sync for all)."""
        held = [i for i, v in enumerate(self.losses) if isinstance(v, torch.Tensor)]
        if held:
            read = torch.stack([self.losses[i] for i in held]).reshape(len(held), -1).tolist()
            for i, values in zip(held, read, strict=True):
                self.losses[i] = values
        return sum(v[member] * s for v, (s, a) in zip(self.losses, self.steps, strict=True)
                   if a[member])

    def correct_count(self, member: int) -> float:
        """Member ``member``'s correct predictions."""
        correct = self.correct
        return float(correct.reshape(-1)[member]) if correct is not None else 0.0
