"""The guide's three losses, and classification accuracy.

An output layer without activation gives logits and the loss applies softmax/sigmoid
inside, in a numerically stable way; an explicit softmax/sigmoid output layer makes the
loss take probabilities instead.

Example:
    >>> import torch
    >>> loss = Loss("cross_entropy")
    >>> float(loss(torch.zeros(2, 4), torch.tensor([0, 3])))  # uniform logits: log(4)
    1.3862943649291992
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base.vocabulary import LOSSES

_EPS = 1e-12


class Loss:
    """A loss by name, aware of whether the model outputs logits or probabilities.

    Args:
        name: ``"cross_entropy"``, ``"mse"`` or ``"binary_cross_entropy"``.
        output_activation: the model's last activation (``"softmax"``, ``"sigmoid"`` or
            anything else/None for raw outputs).
    """

    def __init__(self, name: str, output_activation: str | None = None):
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {name!r}")
        self.name = name
        self.from_probs = (name == "cross_entropy" and output_activation == "softmax") or (
            name == "binary_cross_entropy" and output_activation == "sigmoid")

    @property
    def is_classification(self) -> bool:
        """True for the losses where accuracy is defined."""
        return self.name != "mse"

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss over the batch."""
        if self.name == "cross_entropy":
            if self.from_probs:
                logp = output.clamp_min(_EPS).log()
                if target.dtype == torch.long:
                    return F.nll_loss(logp, target)
                return -(target * logp).sum(dim=1).mean()
            return F.cross_entropy(output, target)
        if self.name == "mse":
            return F.mse_loss(output, target)
        if self.from_probs:
            return F.binary_cross_entropy(output, target)
        return F.binary_cross_entropy_with_logits(output, target)

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The number of correct predictions in a batch, as a 0-d tensor (no host sync).

        For binary cross-entropy with several outputs, each output counts as a fraction of
        a sample, so the result divided by the batch size is the element-wise accuracy.
        """
        if self.name == "cross_entropy":
            labels = target if target.dtype == torch.long else target.argmax(dim=1)
            return (output.argmax(dim=1) == labels).sum()
        threshold = 0.5 if self.from_probs else 0.0
        hits = (output > threshold) == (target > 0.5)
        return hits.float().sum() / (hits[0].numel() if hits.dim() > 1 else 1)

    def prepare_targets(self, y: torch.Tensor, output_shape: tuple | None,
                        argname: str = "y") -> torch.Tensor:
        """Check targets against the model's output and convert them once, before training.

        cross_entropy takes integer class indices ``(N,)`` (checked to lie in
        ``[0, classes)``) or one-hot/probability rows ``(N, classes)``; mse and
        binary_cross_entropy take floats shaped like the output (``(N,)`` is accepted for
        a ``(None, 1)`` output). binary_cross_entropy targets must lie in [0, 1].
        """
        if y.dim() == 0:
            raise ValueError(f"{argname} must have a batch dimension; got a scalar")
        out = tuple(output_shape[1:]) if output_shape is not None else None
        if self.name == "cross_entropy":
            classes = out[0] if out else None
            if y.dim() == 1:
                if y.is_floating_point() and not torch.equal(y, y.round()):
                    raise ValueError(f"{argname} holds class indices for cross_entropy, "
                                     "but some values are not whole numbers")
                y = y.long()
                bad = (y < 0) | (y >= classes) if classes is not None else y < 0
                if bool(bad.any()):
                    value = int(y[bad][0])
                    raise ValueError(f"{argname} holds label {value}, outside [0, {classes}) "
                                     f"for an output of {classes} classes")
                return y.long()
            if out is not None and tuple(y.shape[1:]) != out:
                raise ValueError(f"{argname} has shape {tuple(y.shape)}; cross_entropy expects "
                                 f"class indices (N,) or one-hot rows (N, {classes})")
            y = y.float()
            if y.dim() == 2 and (bool((y < 0).any()) or
                                 not torch.allclose(y.sum(dim=1), torch.ones(()), atol=1e-3)):
                raise ValueError(f"{argname} rows must be one-hot or class probabilities (each "
                                 "row >= 0, summing to 1) for cross_entropy; for regression "
                                 "targets use loss='mse'")
            return y
        if out is not None and tuple(y.shape[1:]) != out:
            if y.dim() == 1 and out == (1,):
                y = y.unsqueeze(1)
            else:
                raise ValueError(f"{argname} has shape {tuple(y.shape)}, but the model's output "
                                 f"is {tuple(output_shape)}: {self.name} needs targets shaped "
                                 "like the output")
        y = y.float()
        if self.name == "binary_cross_entropy" and bool(((y < 0) | (y > 1)).any()):
            raise ValueError(f"{argname} must hold 0.0/1.0 targets for binary_cross_entropy; "
                             f"got values from {float(y.min())} to {float(y.max())}")
        return y
