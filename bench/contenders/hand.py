"""The reference: the plain, idiomatic PyTorch loop.

``torch.optim.Adam`` with its default settings (no ``fused``/``foreach`` flag),
``model.train()``, one ``randperm`` per epoch, index slicing of resident tensors,
``zero_grad``, ``backward``, ``step``. Inference: ``torch.inference_mode()`` batches.

:class:`HandLoopFused` is the best hand-written loop, the reference ``xb.fit`` is held
to: the same loop with ``torch.optim.Adam(fused=True)`` (where torch has fused kernels for
the device, else ``foreach=True``; on the CPU fused Adam steps 1.3-1.5x faster than
foreach at batch 32 on the bench's MLPs) that keeps each batch's loss on the device and
reads them once per epoch (one ``torch.stack(...).mean().item()``: a loop that reports its
epoch loss, with no per-batch host sync). It also tells how much of a framework's time is
its loop rather than its optimizer kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..workloads import torch_module
from .base import Contender


class HandLoop(Contender):
    optimizer_options: dict = {}
    epoch_loss = False  # keep the batches' losses and read their mean once per epoch

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = torch_module(workload).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, **self.optimizer_options)
        self.x, self.y = x.to(self.device), y.to(self.device)  # once

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        net, opt, x, y, keep = self.net, self.opt, self.x, self.y, self.epoch_loss
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(n, device=self.device)
            losses = []
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                xb, yb = x[idx], y[idx]
                opt.zero_grad()
                loss = F.cross_entropy(net(xb), yb)
                loss.backward()
                opt.step()
                if keep:
                    losses.append(loss.detach())
            if keep:
                self.last_epoch_loss = torch.stack(losses).mean().item()  # one sync

    def predict(self, n: int, batch_size: int) -> torch.Tensor:
        net, x = self.net, self.x
        net.eval()
        with torch.inference_mode():
            return torch.cat([net(x[i:min(i + batch_size, n)]) for i in range(0, n, batch_size)])


class HandLoopFused(HandLoop):
    epoch_loss = True

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        fused = self.device.type in _get_fused_kernels_supported_devices()
        self.optimizer_options = {"fused": True} if fused else {"foreach": True}
        super().setup(workload, x, y)
