"""Plain PyTorch fed by ``torch.utils.data.DataLoader`` (the tutorial's way).

The data stays on the CPU in a ``TensorDataset``; the DataLoader shuffles, fetches
samples one by one and collates them (``num_workers=0``); each batch is moved to the
device (pinned memory on CUDA). The loop and optimizer are the hand-written loop's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..workloads import torch_module
from .base import Contender


class DataLoaderLoop(Contender):
    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = torch_module(workload).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.x, self.y = x, y
        self.pin = self.device.type == "cuda"

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        net, opt, dev = self.net, self.opt, self.device
        loader = DataLoader(TensorDataset(self.x[:n], self.y[:n]), batch_size=batch_size,
                            shuffle=True, pin_memory=self.pin)
        net.train()
        for _ in range(epochs):
            for xb, yb in loader:
                xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                opt.zero_grad()
                loss = F.cross_entropy(net(xb), yb)
                loss.backward()
                opt.step()

    def predict(self, n: int, batch_size: int) -> torch.Tensor:
        net, dev = self.net, self.device
        loader = DataLoader(TensorDataset(self.x[:n]), batch_size=batch_size,
                            pin_memory=self.pin)
        net.eval()
        with torch.inference_mode():
            return torch.cat([net(xb.to(dev, non_blocking=True)) for (xb,) in loader])
