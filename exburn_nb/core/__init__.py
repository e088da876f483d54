"""The core: specs and the layer registry, the ``Model`` (compile, save, load), losses,
optimizers and schedules, data sources, ``FitConfig`` / ``CompileConfig``, the history
recorder and the reader of run directories (``read_run``). Nothing here trains;
``exburn_nb.train`` does."""
