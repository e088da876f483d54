"""exburn_nb: ``xb.compile`` once, then ``xb.fit(model, (x, y), epochs=..., batch_size=...)``.

The data is handed over as tensors already on the model's device (moved once), as a
user would after the first call; ``fit`` moves nothing then. ``predict`` is
``model.predict(x, batch_size=...)`` (its result lands on the CPU, as documented).
"""

from __future__ import annotations

import torch

from .base import Contender


def build_spec(workload: dict):  # noqa: ANN201 - an exburn_nb Spec
    """The workload as an exburn_nb spec."""
    import exburn_nb as xb

    spec = xb.input("input", shape=(None, *workload["input_shape"]))
    for layer in workload["layers"]:
        kind = layer["kind"]
        if kind == "dense":
            spec = spec.dense(layer["units"], activation=layer["activation"])
        elif kind == "dropout":
            spec = spec.dropout(rate=layer["rate"])
        elif kind == "conv2d":
            spec = spec.conv2d(layer["filters"], layer["kernel_size"], padding="same",
                               activation=layer["activation"])
        elif kind == "max_pool2d":
            spec = spec.max_pool2d(layer["pool_size"])
        elif kind == "flatten":
            spec = spec.flatten()
    return spec


class ExburnFit(Contender):
    library = "exburn_nb"
    verbose = False

    def version(self) -> str:
        import exburn_nb

        return exburn_nb.__version__

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        import exburn_nb as xb

        self.xb = xb
        device = "gpu" if self.device.type != "cpu" else "cpu"
        self.model = xb.compile(build_spec(workload), loss="cross_entropy", optimizer="adam",
                                learning_rate=1e-3, device=device)
        self.x, self.y = x.to(self.device), y.to(self.device)  # once

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        self.xb.fit(self.model, (self.x[:n], self.y[:n]), epochs=epochs, batch_size=batch_size,
                    verbose=self.verbose, **self.options())

    def options(self) -> dict:
        """Fit options besides the workload's."""
        return {}

    def predict(self, n: int, batch_size: int) -> torch.Tensor:
        return self.model.predict(self.x[:n], batch_size=batch_size)


class ExburnFitVerbose(ExburnFit):
    """``verbose=True``: a tqdm bar per epoch and a line per epoch (to a log file here)."""

    verbose = True


class ExburnFitRunDir(ExburnFit):
    """``run_dir=``: every fit writes its rows to a new run directory (run.json at its
    start and end, history.jsonl as it goes), as a job watched from a notebook does."""

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        import tempfile

        if not hasattr(self, "runs"):
            self.runs = tempfile.TemporaryDirectory(prefix="xb-bench-runs-")
        run_dir = tempfile.mkdtemp(dir=self.runs.name)
        self.xb.fit(self.model, (self.x[:n], self.y[:n]), epochs=epochs, batch_size=batch_size,
                    verbose=self.verbose, run_dir=run_dir)


class ExburnFitCompiled(ExburnFit):
    """``compile=True``: the captured step (one ``torch.compile`` graph per step). The
    compile happens in the warm-up (not timed); its time is reported on its own."""

    def options(self) -> dict:
        # on a GPU no batch waits on the host: the losses are read after the epoch
        return {"compile": True, "terminate_on_nan": self.device.type == "cpu"}

    def extras(self) -> dict:
        seconds = [r["compile_seconds"] for r in self.model.recorder.runs
                   if "compile_seconds" in r]
        return {"compile_seconds": max(seconds)} if seconds else {}
