"""skorch 1.x: ``NeuralNetClassifier`` around the plain network.

``criterion=CrossEntropyLoss`` (logits), ``optimizer=torch.optim.Adam``, ``lr=1e-3``,
``train_split=None`` (no internal validation split), ``verbose=0``, shuffled training
batches; ``partial_fit(x, y, epochs=...)`` continues training the same network. skorch
wraps the tensors in its Dataset and iterates a DataLoader. Inference: ``predict_proba``
(softmax probabilities as NumPy, skorch's user-facing call).
"""

from __future__ import annotations

import warnings

import torch

from ..workloads import torch_module
from .base import Contender


class SkorchFit(Contender):
    library = "skorch"

    def __init__(self, device: torch.device):
        super().__init__(device)
        import skorch

        self.skorch = skorch
        warnings.filterwarnings("ignore")

    def version(self) -> str:
        return self.skorch.__version__

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = self.skorch.NeuralNetClassifier(
            torch_module(workload), criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam, lr=1e-3, max_epochs=1, batch_size=32,
            train_split=None, iterator_train__shuffle=True, verbose=0,
            device=str(self.device))
        self.net.initialize()
        self.x, self.y = x, y

    def _batch_size(self, batch_size: int) -> None:
        if self.net.batch_size != batch_size:
            self.net.set_params(batch_size=batch_size)

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        self._batch_size(batch_size)
        self.net.partial_fit(self.x[:n], self.y[:n], epochs=epochs)

    def predict(self, n: int, batch_size: int) -> object:
        self._batch_size(batch_size)
        return self.net.predict_proba(self.x[:n])
