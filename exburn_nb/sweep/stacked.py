"""The stacked network and optimizers behind :mod:`exburn_nb.sweep`.

M copies of one network train as one: each parameter is an ``(M, ...)`` stack of the
members' own, each layer runs its kind's stacked forward
(:meth:`~exburn_nb.core.layers.LayerKind.stacked_forward`: a dense layer is one batched
matmul, ``torch.baddbmm``), and the optimizers update all M members with per-member
hyperparameters (``(M,)`` tensors broadcast over each parameter). Member ``m`` computes
exactly what its own ``torch.optim`` optimizer and ``nn.Sequential`` compute, in the same
order (so to float32 round-off); dropout draws each member's masks from that member's own
generator, in the order its own run draws them, so the masks are identical. Which layers
stack, and how, is their kind's business: this module knows no kind by name.

Example:
    >>> import exburn_nb as xb
    >>> spec = xb.input("input", shape=(None, 4)).dense(3, name="out")
    >>> models = [xb.compile(spec, seed=s) for s in (0, 1)]
    >>> net = StackedNet(models)
    >>> net.forward(torch.zeros(2, 5, 4), [None, None]).shape
    torch.Size([2, 5, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..base.torch_internals import foreach_copy_, fused_adam_, fused_sgd_
from ..core.layers import REGISTRY, LayerKind, StackedForward
from ..core.model import Model
from ..core.optim import OPTIMIZER_STATE, adam_update, rmsprop_update, sgd_update
from ..train.engine import all_finite, finite_rows

FUSED_MIN_PARAMS = 20_000  # from here on, each member's own fused kernel beats the
# vectorised update (measured on the CPU: guide MLP 235k params, digits MLP 2.4k params)


def unstackable_reason(model: Model) -> str | None:
    """Why ``model`` cannot train in a stacked group, or None when it can.

    Example:
        >>> import exburn_nb as xb
        >>> unstackable_reason(xb.compile(xb.input("x", shape=(None, 1, 4, 4)).conv2d(2, 3)))
        'its layers include conv2d (the stacked engine handles dense, dropout, activation, flatten)'
    """
    if model.spec is None:
        return "it was compiled from a torch.nn.Module (only specs are stacked)"
    kinds = sorted({la.kind for la in model.spec.layers if not REGISTRY[la.kind].stackable})
    if kinds:
        handled = [name for name, kind in REGISTRY.items() if kind.stackable]
        return (f"its layers include {', '.join(kinds)} (the stacked engine handles "
                f"{', '.join(handled)})")
    if model.frozen_layers:
        return f"it has frozen layers {sorted(model.frozen_layers)}"
    if model.recorder.runs or model.torch_optimizer.state:
        return "it has been trained already (the stacked engine starts fresh models)"
    return None


def spec_key(model: Model) -> str:
    """What the members of one stacked group must share of their specs: the input and
    every layer, options included but for those its kind lets members set differently
    (:attr:`~exburn_nb.core.layers.LayerKind.member_options`, e.g. dropout's rate).

    Example:
        >>> import exburn_nb as xb
        >>> spec = xb.input("x", shape=(None, 4)).dense(3).dropout(0.1)
        >>> key = spec_key(xb.compile(spec))
        >>> key == spec_key(xb.compile(spec.replace(1, rate=0.5)))
        True
        >>> key == spec_key(xb.compile(spec.replace(0, units=5)))
        False
    """
    spec = model.spec
    layers = [(la.kind, la.name, {k: v for k, v in la.options.items()
                                  if k not in REGISTRY[la.kind].member_options})
              for la in spec.layers]
    return repr((spec.input_name, spec.input_shape, layers))


class StackedNet:
    """The members' weights stacked, and a forward pass over all of them at once.

    Each layer's kind prepares its stacked forward once, here; :meth:`forward` only calls
    them in turn.

    Args:
        models: fresh compiled models of one spec (options a kind lists in its
            ``member_options``, such as dropout rates, may differ); their weights are
            copied into the stack.

    Raises:
        ValueError: when the members' specs differ otherwise, or a layer's kind has no
            stacked forward.
    """

    def __init__(self, models: Sequence[Model]):
        self.models = list(models)
        self.size = len(models)
        key = spec_key(models[0])
        for m, model in enumerate(self.models):
            if spec_key(model) != key:
                raise ValueError(f"models[{m}] has another spec than models[0]; the members "
                                 "of a stacked net differ at most in options their layer "
                                 "kinds list as member_options")
        modules = [dict(m.module.named_children()) for m in self.models]
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        self.steps: list[StackedForward] = []  # each layer's, prepared: (h, generators) -> h
        self._layers: list[tuple[LayerKind, list, slice]] = []  # kind, members' layers, params
        self._owners: dict[str, tuple[LayerKind, str]] = {}  # name -> (kind, its local name)
        with torch.no_grad():
            for index, layer in enumerate(models[0].spec.layers):
                kind = REGISTRY[layer.kind]
                own = [dict(children[layer.name].named_parameters()) for children in modules]
                params = []
                for local in own[0]:
                    name = f"{layer.name}.{local}"
                    self._owners[name] = (kind, local)
                    self.names.append(name)
                    params.append(torch.stack([kind.stack_layout(local, p[local].detach())
                                               for p in own]).requires_grad_())
                layers = [m.spec.layers[index] for m in self.models]
                self._layers.append((kind, layers, slice(len(self.params),
                                                         len(self.params) + len(params))))
                self.params += params
                self.steps.append(kind.stacked_forward(layers, params))

    def forward(self, x: torch.Tensor, generators: Sequence[torch.Generator | None] | None,
                ) -> torch.Tensor:
        """Outputs ``(M, B, ...)`` for inputs ``(M, B, ...)``; ``generators`` (one per
        member) draw the dropout masks in training, None means inference."""
        h = x
        for step in self.steps:
            h = step(h, generators)
        return h

    def forward_with(self, params: Sequence[torch.Tensor], x: torch.Tensor,
                     generators: Sequence[torch.Generator | None] | None) -> torch.Tensor:
        """:meth:`forward` with ``params`` (laid out as :attr:`params`) in place of the
        stack's own: a function of the weights, for ``torch.func`` transforms."""
        h = x
        for kind, layers, span in self._layers:
            h = kind.stacked_forward(layers, list(params[span]))(h, generators)
        return h

    def layout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A member's tensor for parameter ``name`` as the stack holds it (as its layer's
        kind lays it out: a dense weight transposed); the same call turns it back."""
        kind, local = self._owners[name]
        return kind.stack_layout(local, t)

    def nbytes(self) -> int:
        """Bytes held by the stacked parameters and their gradients."""
        return sum(p.numel() * p.element_size() * (2 if p.grad is not None else 1)
                   for p in self.params)


def _per_member(values: Sequence[float] | torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``values`` (one per member) as ``p``'s dtype, shaped to broadcast over ``p``.

    Python floats are rounded once, from float64, as ``torch.optim`` rounds its scalars."""
    if not isinstance(values, torch.Tensor):
        values = torch.tensor(values, dtype=torch.float64).to(p.device, p.dtype)
    return values.view(-1, *[1] * (p.dim() - 1))


class StackedOptimizer:
    """The models' optimizer (one kind), stepping all members with their own settings.

    Reads each member's constants from its ``torch.optim`` param group (betas, momentum,
    alpha, eps); ``lr``, ``weight_decay`` and ``nesterov`` are set per member by the caller.
    After training, :meth:`write_back` puts each member's state into its own optimizer in
    ``torch.optim``'s format, so a later ``xb.fit`` continues exactly.
    """

    def __init__(self, kind: str, models: Sequence[Model], params: list[torch.Tensor]):
        self.kind, self.params, self.size = kind, params, len(models)
        self.device = params[0].device
        groups = [m.torch_optimizer.param_groups[0] for m in models]
        self.lr = [g["lr"] for g in groups]
        self.weight_decay = [g["weight_decay"] for g in groups]
        self.nesterov = [False] * self.size
        self.steps = [0] * self.size
        if kind in ("adam", "adamw"):
            self.beta1 = [g["betas"][0] for g in groups]
            self.beta2 = [g["betas"][1] for g in groups]
            self._same_betas = len(set(self.beta1)) == len(set(self.beta2)) == 1
        self.eps = [g.get("eps", 0.0) for g in groups]
        self.momentum = [g.get("momentum", 0.0) for g in groups]
        self.alpha = [g.get("alpha", 0.0) for g in groups]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]
        per_member = sum(p[0].numel() for p in params)
        self.fused = (kind != "rmsprop" and per_member >= FUSED_MIN_PARAMS
                      and all(g.get("fused") for g in groups))
        self._update = self.update_all
        self._key: tuple | None = None  # the settings hyper()'s values were made for
        self.value_keys: list[str] = []  # the names in hyper() the kind's rule reads

    def capture(self) -> None:
        """Run the vectorised update as one ``torch.compile`` graph (its dozen passes per
        parameter fused into one kernel); the fused path is left as it is."""
        self._update = torch.compile(self.update_all, dynamic=False)

    def step(self, active: Sequence[bool]) -> None:
        """One update of the active members; the others' weights and state stay as they are."""
        if self.fused:
            self._fused_step(active)
            return
        frozen = [m for m, a in enumerate(active) if not a]
        if frozen:
            idx = torch.tensor(frozen, device=self.device)
            kept = [(p.detach()[idx].clone(), {k: v[idx].clone() for k, v in s.items()})
                    for p, s in zip(self.params, self.state, strict=True)]
        self.count_steps(active)
        self.init_state()
        self._update(self.hyper(), [p.grad for p in self.params])
        with torch.no_grad():
            if frozen:
                for p, state, (old_p, old_s) in zip(self.params, self.state, kept, strict=True):
                    p[idx] = old_p
                    for k, v in old_s.items():
                        state[k][idx] = v

    def update_all(self, h: dict[str, torch.Tensor], grads: Sequence[torch.Tensor],
                   mask: torch.Tensor | None = None) -> None:
        """Every parameter's update with this step's per-member values ``h``, written in
        place (:func:`update_members` on the stack's weights and state)."""
        update_members(self.kind, self.value_keys, h, self.params, grads, self.state, mask)

    def _rule_keys(self) -> list[str]:
        """The keys of :meth:`hyper` the kind's rule reads (the others are left out: each
        is a view per parameter and step); :meth:`hyper` keeps them, with the settings
        they depend on, as :attr:`value_keys`."""
        keys = {"adam": ["one_minus_beta1", "beta2", "one_minus_beta2", "eps", "step_size",
                         "inv_bc2"],
                "sgd": ["lr"], "rmsprop": ["lr", "alpha", "one_minus_alpha", "eps"]}
        keys["adamw"] = [*keys["adam"], "decay"]
        out = keys[self.kind]
        if any(self.weight_decay) and self.kind != "adamw":
            out = [*out, "weight_decay"]
        if self.kind == "sgd":
            out += [k for k, values in (("momentum", self.momentum),
                                        ("nesterov", self.nesterov)) if any(values)]
        return out

    def init_state(self) -> None:
        """Create the state the first step would create, as zeros (the same numbers: each
        rule's first step from zeros is its first step), so a captured update only
        reads and writes it."""
        for p, state in zip(self.params, self.state, strict=True):
            for key in OPTIMIZER_STATE[self.kind]:
                if key not in state:
                    state[key] = torch.zeros_like(p, requires_grad=False)

    def count_steps(self, stepped: Sequence[bool]) -> None:
        """Count a step for each member that took one (outside :meth:`step`)."""
        self.steps[:] = [n + bool(s) for n, s in zip(self.steps, stepped, strict=True)]

    def _fused_step(self, active: Sequence[bool]) -> None:
        """Each active member through torch's own fused kernel, on views of the stack (the
        very kernel its own optimizer runs: one pass over memory, where the vectorised
        update makes a dozen, which dominates for large members)."""
        if not self.state[0]:
            for p, state in zip(self.params, self.state, strict=True):
                for key in ("exp_avg", "exp_avg_sq") if self.kind != "sgd" else (
                        "momentum_buffer",):
                    state[key] = torch.zeros_like(p, requires_grad=False)
        for m, a in enumerate(active):
            if not a:
                continue
            self.steps[m] += 1
            params = [p.detach()[m] for p in self.params]
            grads = [p.grad[m] for p in self.params]
            if self.kind == "sgd":
                fused_sgd_(params, grads, [s["momentum_buffer"][m] for s in self.state],
                           weight_decay=self.weight_decay[m], momentum=self.momentum[m],
                           lr=self.lr[m], dampening=0.0, nesterov=self.nesterov[m],
                           maximize=False, is_first_step=self.steps[m] == 1)
                continue
            step = torch.tensor(float(self.steps[m]), device=self.device)
            fused_adam_(self.kind == "adamw", params, grads,
                        [s["exp_avg"][m] for s in self.state],
                        [s["exp_avg_sq"][m] for s in self.state], [], [step] * len(params),
                        lr=self.lr[m], beta1=self.beta1[m], beta2=self.beta2[m],
                        weight_decay=self.weight_decay[m], eps=self.eps[m], amsgrad=False,
                        maximize=False)

    def hyper(self, steps: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """This step's per-member values as float32 ``(M,)`` tensors (rebuilt when the
        learning rates or weight decays change; Adam's bias corrections every step, from
        ``steps``, the members' step counts after it: :attr:`steps` by default; on the
        CPU the next call rewrites those two in place). The names the kind's rule reads
        are kept as :attr:`value_keys` (the same list object until the settings change)."""
        key = (tuple(self.lr), tuple(self.weight_decay), tuple(self.nesterov))
        if self._key != key:
            def vec(values: Sequence[float]) -> torch.Tensor:
                return torch.tensor(values, dtype=torch.float64).to(self.device, torch.float32)

            self._key, keys = key, self._rule_keys()
            if keys != self.value_keys:  # a new rate keeps the list (a captured step's key)
                self.value_keys = keys
            self._h = {"lr": vec(self.lr), "weight_decay": vec(self.weight_decay),
                       "eps": vec(self.eps), "momentum": vec(self.momentum),
                       "alpha": vec(self.alpha), "one_minus_alpha": vec(
                           [1 - a for a in self.alpha]),
                       "nesterov": torch.tensor(self.nesterov, device=self.device),
                       "decay": vec([1 - a * b for a, b in zip(self.lr, self.weight_decay,
                                                                strict=True)])}
            if self.kind in ("adam", "adamw"):
                self._h.update(one_minus_beta1=vec([1 - b for b in self.beta1]),
                               beta2=vec(self.beta2),
                               one_minus_beta2=vec([1 - b for b in self.beta2]))
                self._lr64 = np.array(self.lr, dtype=np.float64)
                self._corrections = (np.zeros(self.size, np.float32),
                                     np.zeros(self.size, np.float32))
                self._corrected = tuple(torch.from_numpy(c) for c in self._corrections)
        h = self._h
        if self.kind in ("adam", "adamw"):
            step_size, inv_bc2 = self._bias_corrected(self.steps if steps is None else steps)
            h = {**h, "step_size": step_size, "inv_bc2": inv_bc2}
        return h

    def _bias_corrected(self, steps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Adam's step sizes ``lr / (1 - beta1^t)`` and ``1 / sqrt(1 - beta2^t)`` per member
        (0 and 1 for a member that has not stepped), in float64 rounded once to float32,
        as torch.optim computes them. When every member is at the same step with the same
        betas (the usual case) the corrections are two numbers, not M. They are computed
        with numpy into two float32 arrays rewritten each step: on the CPU the tensors
        returned share their memory (no torch operator per step: each costs more than
        the arithmetic, with the caches cold from the update), so the next call
        overwrites them; elsewhere they are copied to the device."""
        t, (step_size, inv_bc2) = steps[0], self._corrections
        if t and self._same_betas and steps.count(t) == len(steps):
            step_size[:] = self._lr64 / (1 - self.beta1[0] ** t)
            inv_bc2[:] = 1 / (1 - self.beta2[0] ** t) ** 0.5
        else:
            step_size[:] = [a / (1 - b ** t) if t else 0.0
                            for a, b, t in zip(self.lr, self.beta1, steps, strict=True)]
            inv_bc2[:] = [1 / (1 - b ** t) ** 0.5 if t else 1.0
                          for b, t in zip(self.beta2, steps, strict=True)]
        if self.device.type == "cpu":
            return self._corrected
        # a blocking copy from pageable memory: reading it is over when .to returns, so
        # the arrays may be rewritten next step (pinned memory copied non_blocking may not)
        both = torch.from_numpy(np.stack(self._corrections)).to(self.device)
        return both[0], both[1]

    def write_back(self, net: StackedNet) -> None:
        """Each member's weights and optimizer state into its own model."""
        for m, model in enumerate(net.models):
            opt = model.torch_optimizer
            own = dict(model.module.named_parameters())
            with model.lock, torch.no_grad():
                for name, p, state in zip(net.names, self.params, self.state, strict=True):
                    param = own[name]
                    param.copy_(net.layout(name, p.detach()[m]))
                    if not state or not self.steps[m]:
                        continue
                    entry = {k: net.layout(name, v[m]).contiguous().clone()
                             for k, v in state.items()}
                    if self.kind != "sgd":
                        entry["step"] = torch.tensor(float(self.steps[m]), dtype=torch.float32,
                                                     device=param.device)
                    opt.state[param] = entry
            for group in opt.param_groups:
                group["lr"] = self.lr[m]

    def nbytes(self) -> int:
        """Bytes held by the optimizer state."""
        return sum(v.numel() * v.element_size() for s in self.state for v in s.values())


def update_members(kind: str, keys: Sequence[str], h: dict[str, torch.Tensor],
                   params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                   state: Sequence[dict[str, torch.Tensor]],
                   mask: torch.Tensor | None = None) -> None:
    """Every stacked parameter's update by ``kind``'s rule (:func:`~exburn_nb.core.optim.
    adam_update` and friends) with the per-member values ``h`` (``(M,)`` tensors; the rule
    reads ``keys``), written in place on ``params`` and ``state`` (one dict of slots per
    parameter); with ``mask`` (``(M,)`` bool) only for the members where it is True (one
    ``torch.where`` per tensor, which a captured graph fuses into the update). A function
    of its tensors alone, so the captured stacked step traces it.

    Example (two members, plain SGD, the second with a rate of 0):
        >>> w, g = torch.ones(2, 3), torch.ones(2, 3)
        >>> update_members("sgd", ["lr"], {"lr": torch.tensor([0.1, 0.0])}, [w], [g],
        ...                [{"momentum_buffer": torch.zeros(2, 3)}])
        >>> w[:, 0].tolist()
        [0.8999999761581421, 1.0]
    """
    update = {"adam": adam_update, "adamw": adam_update, "sgd": sgd_update,
              "rmsprop": rmsprop_update}[kind]
    by_dim: dict[int, dict] = {}  # the values shaped for weights (M, in, out), biases (M, out)
    targets, values = [], []
    with torch.no_grad():
        for p, g, slots in zip(params, grads, state, strict=True):
            c = by_dim.get(p.dim())
            if c is None:  # SGD's momentum and Nesterov flag, where no member has them
                c = by_dim[p.dim()] = {"momentum": 0.0, "nesterov": False} | {
                    k: _per_member(h[k], p) for k in keys}
            old = (p, *(slots[key] for key in OPTIMIZER_STATE[kind]))
            if mask is None:  # in place
                update(p, g, *old[1:], c, out=old)
                continue
            for t, new in zip(old, update(p, g, *old[1:], c), strict=True):
                if new is not t:
                    targets.append(t)
                    values.append(torch.where(_per_member(mask, t), new, t))
        if targets:
            foreach_copy_(targets, values)


def grad_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """Each member's global gradient L2 norm, ``(M,)`` (as ``clip_grad_norm_`` computes it)."""
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)
                         for g in grads], dim=1)
    return torch.linalg.vector_norm(norms, dim=1)


def clip_members(grads: list[torch.Tensor], clip_norm: Sequence[float | None],
                 clip_value: Sequence[float | None]) -> None:
    """Clip each member's gradients by its own thresholds: values first, then the norm
    (``torch.nn.utils`` semantics; a member without a threshold is left alone)."""
    with torch.no_grad():
        if any(v is not None for v in clip_value):
            for g in grads:
                bound = _per_member([v if v is not None else float("inf") for v in clip_value],
                                    g)
                torch.clamp(g, -bound, bound, out=g)
        if any(v is not None for v in clip_norm):
            total = grad_norms(grads)
            limit = torch.tensor([v if v is not None else float("inf") for v in clip_norm],
                                 dtype=total.dtype, device=total.device)
            coef = torch.clamp(limit / (total + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))


def finite_members(tensors: list[torch.Tensor]) -> list[bool]:
    """For each member (dimension 0), whether all its elements of ``tensors`` are finite
    (one fused check first, as ``guarded_step`` does; per member only when it fails)."""
    if all_finite(tensors):
        return [True] * tensors[0].shape[0]
    return finite_rows(tensors).tolist()


def member_loss(model: Model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The model's loss per member: ``(M, B, ...)`` outputs and targets -> ``(M,)``.

    The model's own :class:`~exburn_nb.core.losses.Loss` mapped over members (``vmap``); for
    cross-entropy on logits with class indices, the same ``F.cross_entropy`` on all
    ``M x B`` rows at once, then each member's mean (a third of the vmapped cost).
    """
    loss = model.loss
    mapped = torch.func.vmap(loss)

    def per_member(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss.name == "cross_entropy" and not loss.from_probs and \
                target.dtype == torch.long and out.dim() == 3:
            rows = F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none")
            return rows.view(out.shape[0], out.shape[1]).mean(dim=1)
        return mapped(out, target)

    return per_member


def member_correct(model: Model) -> object:
    """Correct predictions per member, ``(M,)``."""
    return torch.func.vmap(model.loss.correct)


def layer_widths(model: Model) -> int:
    """The sum of the layers' output sizes per sample (activations a batch holds)."""
    total = 0
    for _, shape in model.spec.layer_shapes:
        size = 1
        for d in shape[1:]:
            size *= d
        total += size
    return total


def member_bytes(model: Model, batch_size: int) -> int:
    """An estimate of one member's memory in a stacked group: parameters, gradients and
    optimizer state (two slots for Adam, one for SGD and RMSprop), plus the activations
    of one batch (outputs, masks and their gradients)."""
    params = sum(p.numel() for p in model.module.parameters())
    slots = 2 if model.optimizer in ("adam", "adamw") else 1
    return 4 * (params * (2 + slots) + 3 * batch_size * layer_widths(model))

