"""A run's members and an epoch's running sums, as the training loop keeps them.

A run has one member per model it trains (one for ``fit``, several for a stacked
engine); each keeps its own config, schedule, shuffle generator, run id, step count and
stop reason.

Example:
    >>> tally = EpochTally(2)
    >>> tally.add([0.5, 1.0], None, 4, [True, True]); tally.add([0.25, 2.0], None, 2, [True, False])
    >>> tally.done, tally.loss_sums()
    ([6, 4], [2.5, 4.0])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
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
    a tensor of them, which stays on the device until :meth:`loss_sums` reads all the
    epoch's in one go; an epoch may hold both (a captured step's floats, an eager last
    batch's tensor). Correct counts stay on the device too, summed by
    :meth:`correct_counts` (a torch operator per batch costs more than its sum)."""

    def __init__(self, size: int):
        self.start = time.perf_counter()
        self.done = [0] * size
        self.losses: list = []  # per batch: floats per member, or a tensor of them
        self.steps: list[tuple[int, list[bool]]] = []  # per batch: size, who stepped
        self.correct: list[torch.Tensor] = []  # per batch: correct counts, summed at the end

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
            self.correct.append(correct)

    def loss_sums(self) -> list[float]:
        """Each member's loss summed over its samples (one host sync for all; the batches
        added left to right, for one member as for several).

        Example:
            >>> tally = EpochTally(2)
            >>> tally.add(torch.tensor([1.0, float("nan")]), None, 3, [True, False])
            >>> tally.loss_sums()
            [3.0, 0.0]
        """
        held = [i for i, v in enumerate(self.losses) if isinstance(v, torch.Tensor)]
        if held:
            read = torch.stack([self.losses[i] for i in held]).reshape(len(held), -1).tolist()
            for i, values in zip(held, read, strict=True):
                self.losses[i] = values
        if not self.losses:
            return [0.0] * len(self.done)
        sizes = np.array([s for s, _ in self.steps], dtype=np.float64)[:, None]
        active = np.array([a for _, a in self.steps], dtype=bool)
        # a member's batches only where it stepped (a refused member's loss may be NaN);
        # cumsum adds left to right where sum would go pairwise along one member's column
        return np.cumsum(np.where(active, np.array(self.losses, dtype=np.float64) * sizes,
                                  0.0), axis=0)[-1].tolist()

    def correct_counts(self) -> list[float]:
        """Each member's correct predictions (one host sync for all; summed in float64,
        exact for whole counts, and a multi-label model's fractional ones lose nothing
        to float32 round-off)."""
        if not self.correct:
            return [0.0] * len(self.done)
        return torch.stack(self.correct).double().sum(0).reshape(-1).tolist()
