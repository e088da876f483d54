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
                       "frame hook around every call (about 130 µs a step); compile_fx_inner "
                       "and the compiled code's current_callable: the graph called without "
                       "aot_autograd's run-time wrapper (about 20 µs a step)",
    "torch._C._set_grad_enabled": "gradients off around a directly called captured step, "
                                  "as aot_autograd's wrapper (and torch.no_grad) turn them off",
    "torch._functorch": "config.enable_autograd_cache, off while a captured step compiles "
                        "(a cached graph would skip compile_fx's inner_compile hook)",
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
    ``fallback_random=True``). Returns a callable taking the example's arguments, whose
    ``direct`` attribute says how it runs:

    - ``True``: inductor's code is called directly. aot_autograd's run-time wrapper
      around it costs about 20 µs a call on a small step (more with cold caches), and for
      a graph like a captured training step it only bumps the version counters of the
      inputs written in place and turns gradients off (and turns autocast off, which
      does not reach inductor's kernels: the test calls a step under autocast); the
      callable does the first two itself. That holds when the graph aot_autograd hands
      to inductor takes the same inputs and gives the same outputs as ``graph`` (it kept
      every in-place write in the graph and found no aliased inputs to untangle) and
      returns no input or view of one (whose aliasing the wrapper would rebuild), which
      is checked here.
    - ``False``: anything else; the callable is aot_autograd's own, wrapper included.

    Example:
        >>> compiled = inductor_compile(make_fx(f)(a, b), [a, b])  # doctest: +SKIP
        >>> compiled(a, b), compiled.direct  # doctest: +SKIP
    """
    import operator

    from torch._functorch import config as functorch_config
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    compiled: list = []

    def inner(gm: torch.fx.GraphModule, inputs: Any, **kwargs: Any) -> Any:
        # read before inductor's passes rewrite it: aot_autograd's graph writes every
        # input it mutates with one copy_ (foreach and in-place ops included)
        direct = _signature(gm) == _signature(graph) and not _returns_an_input(gm)
        compiled.append((direct and _written_inputs(gm), compile_fx_inner(gm, inputs,
                                                                           **kwargs)))
        return compiled[-1][1]

    # autograd's cache would hand back a compiled graph without calling ``inner``;
    # inductor's own cache (of the compiled code) still serves a repeat compile
    with functorch_config.patch(enable_autograd_cache=False):
        wrapped = compile_fx(graph, example, inner_compile=inner, config_patches=config)
    if len(compiled) != 1 or compiled[0][0] is False:
        wrapped.direct = False
        return wrapped
    written, code = compiled[0][0], compiled[0][1].current_callable
    versions = operator.itemgetter(*written) if written else None
    bump = torch.autograd.graph.increment_version
    grad_enabled, set_grad_enabled = torch.is_grad_enabled, torch._C._set_grad_enabled

    def call(*args: torch.Tensor) -> list:
        if versions is not None:
            bump(versions(args) if len(written) > 1 else (versions(args),))
        grad = grad_enabled()  # off while the graph runs, as aot_autograd's wrapper does
        set_grad_enabled(False)
        try:
            return code(list(args))
        finally:
            set_grad_enabled(grad)

    call.direct = True
    return call


def _signature(graph: torch.fx.GraphModule) -> tuple[int, int]:
    """How many inputs ``graph`` takes and how many outputs it gives."""
    nodes = list(graph.graph.nodes)
    inputs = sum(n.op == "placeholder" for n in nodes)
    return inputs, len(_outputs(graph))


def _outputs(graph: torch.fx.GraphModule) -> list:
    out = next(n for n in reversed(graph.graph.nodes) if n.op == "output").args[0]
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _returns_an_input(graph: torch.fx.GraphModule) -> bool:
    """Whether an output of ``graph`` is one of its inputs, or a view of one."""
    for node in _outputs(graph):
        while isinstance(node, torch.fx.Node) and node.op == "call_function" and getattr(
                node.target, "is_view", False):
            node = node.args[0]
        if isinstance(node, torch.fx.Node) and node.op == "placeholder":
            return True
    return False


def _written_inputs(graph: torch.fx.GraphModule) -> list[int]:
    """The positions of ``graph``'s inputs it writes in place (``copy_`` into them)."""
    places = [n for n in graph.graph.nodes if n.op == "placeholder"]
    written = {n.args[0] for n in graph.graph.nodes
               if n.op == "call_function" and n.target is torch.ops.aten.copy_.default}
    return [i for i, n in enumerate(places) if n in written]


def mark_static_address(tensor: torch.Tensor) -> None:
    """Tell ``torch.compile`` that ``tensor`` keeps its address across calls (CUDA graphs
    then read it in place instead of copying it in every replay)."""
    torch._dynamo.mark_static_address(tensor)
