"""Train a sweep at once: many configurations of one network in one stacked pass.

:func:`plan` groups (model, config) pairs that can share a step; :func:`fit_stacked` (or
a :class:`StackedTrainer`) trains one group through the training loop with the stacked
step engine. See :mod:`exburn_nb.sweep.planning`.
"""

from . import stacked
from .engine import StackedEngine, StackedTrainer, fit_stacked
from .planning import SweepPlan, group_key, plan

__all__ = ["StackedEngine", "StackedTrainer", "SweepPlan", "fit_stacked", "group_key", "plan", "stacked"]
