"""The core: specs and the layer registry, the ``Model`` (compile, save, load), losses,
optimizers and schedules, data sources, ``FitConfig`` / ``CompileConfig`` and the history
recorder. Nothing here trains; ``exburn_nb.train`` does."""
