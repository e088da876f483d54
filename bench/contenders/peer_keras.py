"""Keras 3 on its torch backend (``KERAS_BACKEND=torch``, set by the worker before import).

The same network as Keras layers (Glorot-uniform kernels and zero biases are Keras's
defaults; convolutions run channels-first like the others), ``Adam(1e-3, epsilon=1e-8)``
(torch's epsilon), sparse categorical cross-entropy on logits, ``jit_compile`` left at
Keras's default. Data: NumPy views of the CPU tensors (no copy), as a Keras user passes
them; ``fit(..., shuffle=True, verbose=0)`` and ``predict(..., verbose=0)``. Keras picks
its device itself (CUDA when torch sees one); ``--device cpu`` hides GPUs from every
worker (``CUDA_VISIBLE_DEVICES=""``). ``keras.device(...)`` scopes are not used: on the
torch backend, variables created inside one are not leaves and get no gradients.
"""

from __future__ import annotations

import os

import torch

from .base import Contender


class KerasFit(Contender):
    library = "keras"

    def __init__(self, device: torch.device):
        super().__init__(device)
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        if keras.backend.backend() != "torch":
            raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}, not torch")
        self.keras = keras

    def version(self) -> str:
        return self.keras.__version__

    def setup(self, workload: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        keras = self.keras
        keras.backend.clear_session()
        layers = keras.layers
        stack = [keras.Input(shape=tuple(workload["input_shape"]))]
        for layer in workload["layers"]:
            kind = layer["kind"]
            if kind == "dense":
                stack.append(layers.Dense(layer["units"], activation=layer["activation"]))
            elif kind == "dropout":
                stack.append(layers.Dropout(layer["rate"]))
            elif kind == "conv2d":
                stack.append(layers.Conv2D(layer["filters"], layer["kernel_size"], padding="same",
                                           activation=layer["activation"],
                                           data_format="channels_first"))
            elif kind == "max_pool2d":
                stack.append(layers.MaxPooling2D(layer["pool_size"], data_format="channels_first"))
            elif kind == "flatten":
                stack.append(layers.Flatten())
        self.model = keras.Sequential(stack)
        self.model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
                                            epsilon=1e-8),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.x, self.y = x.numpy(), y.numpy()

    def train(self, n: int, epochs: int, batch_size: int) -> None:
        self.model.fit(self.x[:n], self.y[:n], batch_size=batch_size, epochs=epochs,
                       shuffle=True, verbose=0)

    def predict(self, n: int, batch_size: int) -> object:
        return self.model.predict(self.x[:n], batch_size=batch_size, verbose=0)

    def teardown(self) -> None:
        super().teardown()
        self.keras.backend.clear_session()
