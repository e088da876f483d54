"""PyTorch Lightning 2: a ``LightningModule`` around the plain network, fed by a DataLoader.

Its leanest set-up: no logger, no checkpointing, no progress bar, no model summary, one
device; ``training_step`` returns the loss and logs nothing; ``configure_optimizers``
returns ``torch.optim.Adam(lr=1e-3)`` with defaults. Each measurement builds a
``Trainer(max_epochs=...)`` and calls ``fit`` (a Trainer trains a module for its
``max_epochs`` once), so the Trainer's construction is part of the time, as in use.
Inference: ``Trainer.predict`` over a DataLoader.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..workloads import torch_module
from .base import Contender


class LightningFit(Contender):
    library = "lightning"

    def __init__(self, device: torch.device):
        super().__init__(device)
        import lightning

        self.L = lightning
        warnings.filterwarnings("ignore")  # "no num_workers", "no logger", ...
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def version(self) -> str:
        return self.L.__version__

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        L = self.L
        net = torch_module(workload)

        class Module(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN202
                xb, yb = batch
                return F.cross_entropy(self.net(xb), yb)

            def predict_step(self, batch, batch_idx):  # noqa: ANN001, ANN202
                return self.net(batch[0])

            def configure_optimizers(self):  # noqa: ANN202
                return torch.optim.Adam(self.parameters(), lr=1e-3)

        self.module = Module()
        self.x, self.y = x, y
        self.pin = self.device.type == "cuda"

    def _trainer(self, epochs: int = 1):  # noqa: ANN202 - a lightning.Trainer
        return self.L.Trainer(max_epochs=epochs, accelerator="gpu" if self.pin else "cpu",
                              devices=1, logger=False, enable_checkpointing=False,
                              enable_progress_bar=False, enable_model_summary=False)

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        loader = DataLoader(TensorDataset(self.x[:n], self.y[:n]), batch_size=batch_size,
                            shuffle=True, pin_memory=self.pin)
        self._trainer(epochs).fit(self.module, loader)

    def predict(self, n: int, batch_size: int) -> torch.Tensor:
        loader = DataLoader(TensorDataset(self.x[:n]), batch_size=batch_size,
                            pin_memory=self.pin)
        return torch.cat(self._trainer().predict(self.module, loader))
