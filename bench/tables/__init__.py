"""The bench's tables, one module per table, run in this order.

Each module has ``NAME``, ``TITLE``, ``run(pool, config, context) -> dict`` (JSON-ready;
``context`` holds the results of the tables already run in this invocation) and
``markdown(result) -> str``. A new table (the dashboard's live cost, for one) is a new
module added to :data:`TABLES`.
"""

from __future__ import annotations

from types import ModuleType

from . import (
    classroom,
    distributed,
    experiment,
    gpu,
    inference,
    limit,
    live,
    overhead,
    playground,
    playground_redraw,
    profile,
    scaling,
    sweep,
    training,
)

TABLES: dict[str, ModuleType] = {m.NAME: m for m in (training, inference, overhead, profile, limit,
                                                     scaling, live, playground,
                                                     playground_redraw, classroom,
                                                     experiment, sweep, distributed, gpu)}
# what ``python -m bench`` runs without TABLE arguments; ``gpu`` is what ``--device cuda
# --quick`` runs (and ``gpu`` by name on any device)
DEFAULT: list[str] = [name for name in TABLES if name != "gpu"]
