"""The private torch functions exburn_nb borrows, each used through this one module.

torch keeps no promise about names that start with ``_``; these are the kernels behind
its own public code (``torch.optim``'s fused optimizers, ``torch.amp.GradScaler``'s
finite check), used here for the same purpose. :data:`BORROWED` lists each with what
it is for, and ``tests/test_borrowed_torch.py`` calls each one and fails with a message
naming torch's version and the function when one moves.

Example:
    >>> found, one = torch.zeros(1), torch.ones(1)
    >>> non_finite_check([torch.tensor([1.0, float("inf")])], found, one); bool(found)
    True
"""

from __future__ import annotations

from typing import Any

import torch

BORROWED = {
    "torch.optim.optimizer._get_fused_kernels_supported_devices":
        "which devices have fused optimizer kernels (torch.optim asks the same)",
    "torch._amp_foreach_non_finite_check_and_unscale_":
        "one fused pass telling whether any gradient is NaN/inf (as GradScaler does)",
    "torch._fused_adam_": "a stacked sweep steps each large Adam member with torch's kernel; "
                          "a fused Adam model's step calls it as torch.optim does",
    "torch._foreach_add_": "counts every parameter's Adam step in one call, as torch.optim "
                           "does before its fused kernel",
    "torch._foreach_copy_": "writes a stacked sweep's updated weights and state back in one "
                            "call instead of one per tensor",
    "torch._fused_adamw_": "the same for AdamW",
    "torch._fused_sgd_": "the same for SGD",
    "torch._dynamo": "mark_static_address: a captured step's CUDA graphs replay on the "
                     "optimizer state's fixed addresses",
    "torch._inductor": "compile_fx: a captured CPU step's traced graph compiled as "
                       "torch.compile's inductor backend compiles it, without Dynamo's "
                       "frame hook around every call (about 130 µs a step)",
}


def fused_kernel_devices() -> list[str]:
    """The device types torch has fused optimizer kernels for (e.g. ``["cpu", "cuda"]``)."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return list(_get_fused_kernels_supported_devices())


def non_finite_check(tensors: list[torch.Tensor], found: torch.Tensor,
                     one: torch.Tensor) -> None:
    """Set ``found`` (a 1-element float tensor, zero before) to 1 when any element of
    ``tensors`` is NaN or inf; multiplies by ``one`` in place, which changes nothing."""
    torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, one)


def fused_adam_(adamw: bool, *args: Any, **kwargs: Any) -> None:
    """torch's fused Adam (``adamw=False``) or AdamW kernel, updating in place."""
    (torch._fused_adamw_ if adamw else torch._fused_adam_)(*args, **kwargs)


def foreach_add_(tensors: list[torch.Tensor], value: float) -> None:
    """Add ``value`` to every tensor of ``tensors`` in place, in one call."""
    torch._foreach_add_(tensors, value)


def foreach_copy_(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """Copy each of ``values`` into the matching tensor of ``targets``, in one call."""
    torch._foreach_copy_(targets, values)


def fused_sgd_(*args: Any, **kwargs: Any) -> None:
    """torch's fused SGD kernel, updating in place."""
    torch._fused_sgd_(*args, **kwargs)


def inductor_compile(graph: torch.fx.GraphModule, example: list[torch.Tensor],
                     **config: Any) -> Any:
    """Compile an FX graph (from ``make_fx``) with inductor, as ``torch.compile``'s
    backend does; ``config``: inductor settings for this compile (e.g.
    ``fallback_random=True``). Returns a callable taking the example's arguments."""
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(graph, example, config_patches=config)


def mark_static_address(tensor: torch.Tensor) -> None:
    """Tell ``torch.compile`` that ``tensor`` keeps its address across calls (CUDA graphs
    then read it in place instead of copying it in every replay)."""
    torch._dynamo.mark_static_address(tensor)
