"""The numbers behind the classroom views, with no UI: what a model predicts and what
happens inside it.

- After training: :func:`confusion_matrix` (rows the true class, as scikit-learn lays it
  out), :func:`per_class_scores`, :func:`most_confidently_wrong`, :func:`class_probabilities`.
- Inside the network: :func:`layer_norms` (weight and gradient norms per layer),
  :class:`ActivationProbe` (dead-ReLU shares and activation histograms from forward hooks
  that exist only while the probe is attached) and :class:`NetworkInspector`, the
  callback that samples them while a model trains (the panels widget views it).
- :func:`gradient_check`: autograd against central differences, layer by layer.

Example:
    >>> cm = confusion_matrix([0, 1, 1], [0, 0, 1])
    >>> cm.tolist()
    [[1, 0], [1, 1]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.data import as_features
from ..core.model import Model
from .callbacks import Callback
from .steps import compute_gradients


def _labels(values: Any, argname: str) -> np.ndarray:
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if array.ndim != 1 or (array.size and (array.dtype.kind not in "iu" or array.min() < 0)):
        raise ValueError(f"{argname} must be a 1-D sequence of class indices >= 0; got an "
                         f"array of shape {array.shape} and dtype {array.dtype}")
    return array.astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class): ``cm[i, j]`` is the number of samples of
    class ``i`` predicted as ``j`` (scikit-learn's layout, classes ``0..num_classes-1``).

    Example:
        >>> confusion_matrix([2, 0], [2, 1], num_classes=3).tolist()
        [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    """
    true, pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true and y_pred must have the same length; got {len(true)} "
                         f"and {len(pred)}")
    seen = int(max(true.max(initial=-1), pred.max(initial=-1))) + 1
    k = seen if num_classes is None else num_classes
    if k < seen:
        raise ValueError(f"num_classes must be at least {seen} (the largest label + 1); got {k}")
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def per_class_scores(confusion: np.ndarray) -> pd.DataFrame:
    """Precision, recall and support per class from a :func:`confusion_matrix` (a class
    never predicted has precision 0, as scikit-learn's ``zero_division=0``).

    Example:
        >>> per_class_scores(confusion_matrix([0, 1, 1], [0, 0, 1]))["recall"].tolist()
        [1.0, 0.5]
    """
    cm = np.asarray(confusion, dtype=np.float64)
    diag, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, diag / predicted, 0.0)
        recall = np.where(support > 0, diag / support, 0.0)
    return pd.DataFrame({"class": np.arange(len(cm)), "precision": precision, "recall": recall,
                         "support": support.astype(np.int64)})


def class_probabilities(model: Model, x: Any) -> torch.Tensor:
    """``(N, classes)`` probabilities from a classifier's outputs: softmax of logits (or the
    softmax output as is) for cross-entropy; for binary cross-entropy with one output,
    the columns ``1 - p`` and ``p``.

    Example:
        >>> probs = class_probabilities(model, test_x)  # doctest: +SKIP
    """
    if not model.loss.is_classification:
        raise ValueError(f"class_probabilities needs a classifier; the model's loss is "
                         f"{model.loss.name!r}")
    out = model.predict(x).float()
    if model.loss.name == "cross_entropy":
        return out if model.loss.from_probs else out.softmax(dim=1)
    p = out if model.loss.from_probs else out.sigmoid()
    return torch.cat([1 - p, p], dim=1) if p.shape[1] == 1 else p


def most_confidently_wrong(probabilities: torch.Tensor, y: Any, k: int = 8) -> pd.DataFrame:
    """The ``k`` misclassified samples with the highest predicted probability, most
    confident first: columns ``index``, ``true``, ``predicted``, ``confidence``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
        >>> most_confidently_wrong(p, [1, 0, 1])["index"].tolist()
        [0, 1]
    """
    true = torch.as_tensor(_labels(y, "y"))
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != true).flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:k]
    return pd.DataFrame({"index": order.numpy(), "true": true[order].numpy(),
                         "predicted": predicted[order].numpy(),
                         "confidence": confidence[order].numpy()})


def _layer_of(parameter_name: str) -> str:
    return parameter_name.rsplit(".", 1)[0]


def layer_norms(model: Model, gradients: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """Per layer: the L2 norm of its parameters (all of them together) and of their
    gradients, one row per layer in order. The gradients are the parameters' ``.grad``
    (NaN before any backward pass), or ``gradients`` by parameter name (an
    :class:`ActivationProbe`'s, recorded before the optimizer clears them).

    Example:
        >>> layer_norms(model)[["layer", "weight_norm"]]  # doctest: +SKIP
    """
    weights: dict[str, float] = {}
    grads: dict[str, float] = {}
    with model.lock, torch.no_grad():
        for name, p in model.module.named_parameters():
            layer = _layer_of(name)
            weights[layer] = weights.get(layer, 0.0) + float(p.double().square().sum())
            grad = p.grad if gradients is None else gradients.get(name)
            if grad is not None:
                grads[layer] = grads.get(layer, 0.0) + float(grad.double().square().sum())
    return pd.DataFrame({"layer": list(weights),
                         "weight_norm": [v ** 0.5 for v in weights.values()],
                         "grad_norm": [grads[k] ** 0.5 if k in grads else float("nan")
                                       for k in weights]})


class ActivationProbe:
    """Forward hooks on every top-level layer (and every ``nn.ReLU`` inside) and gradient
    hooks on every trainable parameter, attached only between :meth:`attach` and
    :meth:`detach` (or inside ``with probe:``).

    While attached, each forward pass run with autograd on (training, not ``predict``)
    keeps a reference to the layer outputs of that batch, and each backward pass to the
    parameters' gradients (:attr:`gradients`, by parameter name; pass them to
    :func:`layer_norms`). :meth:`dead_relu_share` and :meth:`histograms` read the last
    batch seen.

    Example:
        >>> with ActivationProbe(model) as probe:  # doctest: +SKIP
        ...     xb.fit(model, (x, y), epochs=1)
        ...     probe.dead_relu_share()
    """

    def __init__(self, model: Model):
        self.model = model
        self.outputs: dict[str, torch.Tensor] = {}
        self.relu_outputs: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    @property
    def attached(self) -> bool:
        """Whether the hooks are in place."""
        return bool(self._handles)

    def attach(self) -> ActivationProbe:
        """Register the hooks (idempotent)."""
        if self._handles:
            return self
        for name, module in self.model.module.named_modules():
            top = name.split(".", 1)[0]
            if name == top and name:
                self._handles.append(module.register_forward_hook(self._recorder(self.outputs, top)))
            if isinstance(module, nn.ReLU) and name:
                self._handles.append(module.register_forward_hook(
                    self._recorder(self.relu_outputs, top)))
        for name, p in self.model.module.named_parameters():
            if p.requires_grad:
                self._handles.append(p.register_hook(self._gradient_recorder(name)))
        return self

    def detach(self) -> None:
        """Remove the hooks and forget the recorded batch."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs.clear()
        self.relu_outputs.clear()
        self.gradients.clear()

    def __enter__(self) -> ActivationProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    @staticmethod
    def _recorder(store: dict[str, torch.Tensor], key: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            if torch.is_grad_enabled() and isinstance(out, torch.Tensor):
                store[key] = out.detach()
        return hook

    def _gradient_recorder(self, name: str) -> Any:
        def hook(grad: torch.Tensor) -> None:
            self.gradients[name] = grad.detach()
        return hook

    def record(self, x: Any) -> None:
        """Run one forward pass over ``x`` (training mode, no update) to fill the probe."""
        x = as_features(x, self.model.input_shape, "x").to(self.model.torch_device)
        with self.model.lock, torch.enable_grad():
            was_training = self.model.module.training
            self.model.train_mode()
            try:
                self.model.module(x)
            finally:
                self.model.module.train(was_training)

    def dead_relu_share(self) -> dict[str, float]:
        """Per layer with a ReLU: the share of its units (features, or channels for
        convolutions) whose output is 0 for every sample of the last batch."""
        shares = {}
        for layer, out in self.relu_outputs.items():
            alive = (out > 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
            shares[layer] = float(1 - alive.float().mean())
        return shares

    def histograms(self, bins: int = 30) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per layer: ``(counts, edges)`` of its last batch's output values (``bins`` bins
        between the minimum and the maximum, as ``numpy.histogram``)."""
        return {layer: np.histogram(out.float().cpu().numpy().ravel(), bins=bins)
                for layer, out in self.outputs.items()}


class NetworkInspector(Callback):
    """Inside the network while it trains: a callback that samples per-layer weight and
    gradient norms, dead-ReLU shares and activation histograms of the latest batch.

    Off by default, it then costs one attribute check per batch: its
    :class:`ActivationProbe`'s hooks exist only while :attr:`enabled`. While on, it samples
    after each batch that ``sample_when()`` allows (every batch without it) and at the end
    of a run, and tells its listeners (``fn(step)``, in the training thread).

    Args:
        model: the model whose layers are watched.
        bins: activation histogram bins.
        sample_when: ``() -> bool``, asked after each batch while on: sample now? A front
            end passes its throttle, so sampling costs the same however fast batches come.

    Attributes:
        layers: the model's top-level layers (the histograms' keys).
        param_layers: the layers with parameters (the norms' layers).
        relu_layers: the layers holding a ReLU (the dead shares' layers).
        histograms: per layer ``(counts, edges)`` of the last sample.

    Example:
        >>> inspector = NetworkInspector(model, enabled=True)  # doctest: +SKIP
        >>> xb.fit(model, (x, y), epochs=1, callbacks=[inspector])  # doctest: +SKIP
        >>> inspector.norms.tail()  # step, layer, weight_norm, grad_norm  # doctest: +SKIP
    """

    def __init__(self, model: Model, enabled: bool = False, bins: int = 30,
                 sample_when: Callable[[], bool] | None = None):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1; got {bins!r}")
        self.model, self.bins, self.sample_when = model, bins, sample_when
        self.probe = ActivationProbe(model)
        module = model.module
        self.layers = [n for n, _ in module.named_children()]
        self.param_layers = list(dict.fromkeys(_layer_of(n) for n, _ in module.named_parameters()))
        self.relu_layers = list(dict.fromkeys(n.split(".", 1)[0] for n, m in module.named_modules()
                                              if isinstance(m, nn.ReLU) and n))
        self.histograms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._norm_rows: list[dict] = []
        self._dead_rows: list[dict] = []
        self._listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._step, self._sampled = 0, None
        self.enabled = enabled

    @property
    def enabled(self) -> bool:
        """Whether the hooks are attached and batches are sampled."""
        return self.probe.attached

    @enabled.setter
    def enabled(self, on: bool) -> None:
        if on:
            self.probe.attach()
        else:
            self.probe.detach()

    def add_listener(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(step)`` after each sample (in the thread that trains)."""
        self._listeners.append(fn)

    def on_batch_end(self, batch: int, logs: dict) -> None:
        self._step = logs["step"]
        if self.probe.attached and (self.sample_when is None or self.sample_when()):
            self.sample(self._step)

    def on_train_end(self, logs: dict) -> None:
        if self.probe.attached and self.probe.outputs and self._sampled != self._step:
            self.sample(self._step)

    def sample(self, step: int) -> None:
        """Record the norms, dead-ReLU shares and histograms of the latest batch the probe
        saw, then tell the listeners."""
        norms = layer_norms(self.model, self.probe.gradients)
        dead = self.probe.dead_relu_share()
        histograms = self.probe.histograms(self.bins)
        with self._lock:
            self._sampled, self.histograms = step, histograms
            self._norm_rows += [{"step": step, **row} for row in norms.to_dict("records")]
            self._dead_rows += [{"step": step, "layer": k, "dead_share": v}
                                for k, v in dead.items()]
        for fn in list(self._listeners):
            fn(step)

    @property
    def norms(self) -> pd.DataFrame:
        """The samples' norms: ``step``, ``layer``, ``weight_norm``, ``grad_norm``."""
        with self._lock:
            return pd.DataFrame(self._norm_rows,
                                columns=["step", "layer", "weight_norm", "grad_norm"])

    @property
    def dead(self) -> pd.DataFrame:
        """The samples' dead-ReLU shares: ``step``, ``layer``, ``dead_share``."""
        with self._lock:
            return pd.DataFrame(self._dead_rows, columns=["step", "layer", "dead_share"])


def gradient_check(model: Model, batch: Any, method: str = "numerical") -> pd.DataFrame:
    """Autograd against numerical gradients (``compute_gradients(..., grad_method=method)``,
    central differences in float64), one row per layer: ``layer``, ``parameters``,
    ``autograd_norm``, ``numerical_norm``, ``max_abs_error`` and ``relative_error`` =
    ``|a - n| / max(|a| + |n|, 1e-12)`` over the layer's gradients (L2 norms).

    Example:
        >>> gradient_check(model, (x[:16], y[:16]))  # doctest: +SKIP
    """
    if method not in ("numerical", "numerical_batch"):
        raise ValueError(f"method must be 'numerical' or 'numerical_batch'; got {method!r}")
    auto = compute_gradients(model, batch, grad_method="autograd")
    numeric = compute_gradients(model, batch, grad_method=method)
    rows: dict[str, dict[str, Any]] = {}
    for name, a in auto.items():
        n = numeric[name]
        row = rows.setdefault(_layer_of(name), {"parameters": 0, "a": [], "n": []})
        row["parameters"] += a.numel()
        row["a"].append(a.double().reshape(-1).cpu())
        row["n"].append(n.double().reshape(-1).cpu())
    out = []
    for layer, row in rows.items():
        a, n = torch.cat(row["a"]), torch.cat(row["n"])
        diff = float((a - n).norm())
        out.append({"layer": layer, "parameters": row["parameters"],
                    "autograd_norm": float(a.norm()), "numerical_norm": float(n.norm()),
                    "max_abs_error": float((a - n).abs().max()),
                    "relative_error": diff / max(float(a.norm()) + float(n.norm()), 1e-12)})
    return pd.DataFrame(out)
