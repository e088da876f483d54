"""The interface every contender implements (imported inside worker processes only)."""

from __future__ import annotations

import torch


class Contender:
    """A way of training and running a workload's network.

    Args:
        device: where the model lives; data the contender keeps resident is moved there
            once in :meth:`setup`.
    """

    library = "torch"

    def __init__(self, device: torch.device):
        self.device = device

    def version(self) -> str:
        """The version of the library this contender measures."""
        return torch.__version__

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        """Build the network, loss and Adam(1e-3) optimizer; keep the (CPU) data."""
        raise NotImplementedError

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        """Train ``epochs`` epochs over the first ``n`` samples, shuffled each epoch."""
        raise NotImplementedError

    def predict(self, n: int, batch_size: int) -> object:
        """Outputs for the first ``n`` samples, without dropout or gradients."""
        raise NotImplementedError

    def extras(self) -> dict:
        """Numbers about the last :meth:`setup`'s runs that the tables show besides the
        timings (e.g. ``compile_seconds``); none by default."""
        return {}

    def teardown(self) -> None:
        """Drop every reference to the model and data of the last :meth:`setup`
        (every attribute set after construction)."""
        keep = getattr(self, "_init_attrs", {"device"})
        for key in [k for k in vars(self) if k not in keep and k != "_init_attrs"]:
            delattr(self, key)
