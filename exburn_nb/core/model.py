"""``compile`` and the ``Model``: a network with its loss, optimizer, device and history.

Example:
    >>> import exburn_nb as xb
    >>> spec = xb.input("input", shape=(None, 4)).dense(3, name="out")
    >>> m = xb.compile(spec, loss="cross_entropy", optimizer="adam", learning_rate=1e-3)
    >>> sorted(m.parameters())
    ['out.bias', 'out.weight']
    >>> m.freeze(["out"]).is_frozen("out")
    True
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..base.checks import check_int, check_number, check_seed
from ..base.vocabulary import DEVICES
from ..io import exporters, persist
from ..io.filecheck import check_optimizer_groups, check_optimizer_state
from .config import CompileConfig
from .data import as_features
from .history import History
from .losses import Loss
from .optim import check_optimizer, fused_supported, make_optimizer, set_learning_rate
from .spec import Spec
from .summary import SummaryRow, format_shape, render_html, render_text


def gpu_device() -> torch.device | None:
    """The accelerator torch can use here (CUDA, else Apple MPS), or None."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return None


def available_devices() -> list[str]:
    """The device names usable here: ``["cpu"]``, plus ``"gpu"`` when one exists."""
    return ["cpu", "gpu"] if gpu_device() is not None else ["cpu"]


def resolve_device(device: str) -> tuple[str, torch.device]:
    """``("cpu" | "gpu", torch.device)`` for ``"cpu"``, ``"gpu"`` or ``"auto"``."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    gpu = gpu_device()
    if device == "gpu" and gpu is None:
        raise ValueError("device='gpu' was asked for, but torch finds no CUDA or Apple MPS GPU on "
                         "this machine; use device='cpu' or device='auto'")
    if device == "cpu" or gpu is None:
        return "cpu", torch.device("cpu")
    return "gpu", gpu


class Model:
    """A compiled network. Build one with :func:`compile` or :func:`exburn_nb.load`.

    ``fit``, ``train_step``, ``freeze``, ``unfreeze`` and ``to_device`` change the model in
    place and return it. ``history`` is a pandas DataFrame, one row per epoch.
    """

    def __init__(self, module: nn.Module, *, spec: Spec | None, loss: str, optimizer: str,
                 learning_rate: float, weight_decay: float, device: str,
                 input_shape: tuple | None):
        self.spec = spec
        self.module = module
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.loss_function = loss
        self.optimizer = check_optimizer(optimizer)
        self.learning_rate = check_number("learning_rate", learning_rate, positive=True)
        self.weight_decay = check_number("weight_decay", weight_decay)
        self.device, self.torch_device = resolve_device(device)
        self.module.to(self.torch_device)
        self._shapes = self._infer_shapes()
        self.loss = Loss(loss, self._output_activation())
        self.torch_optimizer = make_optimizer(optimizer, module.parameters(), learning_rate,
                                              weight_decay, self.torch_device)
        self._frozen: set[str] = set()
        self.recorder = History()
        self.lock = threading.RLock()  # held by the loop for each batch; forward/predict take it too

    # ---------------------------------------------------------------- structure
    @property
    def layers(self) -> dict[str, nn.Module]:
        """The layers by name (the module's named children)."""
        return dict(self.module.named_children())

    @property
    def output_shape(self) -> tuple | None:
        """The output shape ``(None, ...)``, or None when unknown."""
        return self._shapes[-1] if self._shapes else self.input_shape

    def _infer_shapes(self) -> list[tuple | None]:
        if self.spec is not None:
            return [shape for _, shape in self.spec.layer_shapes]
        names = list(self.layers)
        if self.input_shape is None:
            return [None] * len(names)
        shapes: dict[str, tuple] = {}

        def record(name: str) -> Any:
            def hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
                shapes.setdefault(name, (None, *out.shape[1:]))  # returns None: output kept
            return hook

        hooks = [child.register_forward_hook(record(n))
                 for n, child in self.module.named_children()]
        was_training = self.module.training
        try:
            self.module.eval()
            with torch.no_grad():
                self.module(torch.zeros((2, *self.input_shape[1:]), device=self.torch_device))
        except Exception as exc:
            raise ValueError(f"input_shape {self.input_shape} does not fit the module: {exc}") from None
        finally:
            for h in hooks:
                h.remove()
            self.module.train(was_training)
        return [shapes.get(n) for n in names]

    def _output_activation(self) -> str | None:
        if self.spec is not None:
            return self.spec.output_activation
        last = list(self.module.children())[-1:] or [self.module]
        return {nn.Softmax: "softmax", nn.Sigmoid: "sigmoid"}.get(type(last[0]))

    def _layer_names(self, names: Iterable[str] | str, argname: str = "names") -> list[str]:
        given = names
        if isinstance(names, str):
            names = [names]
        if isinstance(names, (bytes, bytearray)) or not isinstance(names, Iterable):
            names = [None]
        names, known = list(names), list(self.layers)
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"{argname} must be a layer name or a list of layer names "
                             f"(strings) such as {known[:2]}; got {given!r}")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"{argname}: unknown layer {unknown[0]!r}; the layers are {known}")
        return names

    # ---------------------------------------------------------------- inspection
    def parameters(self) -> dict[str, torch.Tensor]:
        """The parameters by name (``<layer>.weight``, ``<layer>.bias``)."""
        return dict(self.module.named_parameters())

    def count_params(self, trainable_only: bool = False) -> int:
        """The number of parameters (only unfrozen ones with ``trainable_only``)."""
        return sum(p.numel() for p in self.module.parameters()
                   if p.requires_grad or not trainable_only)

    def _summary_rows(self) -> list[SummaryRow]:
        types = ({la.name: la.type_name for la in self.spec.layers} if self.spec is not None else
                 {n: type(m).__name__ for n, m in self.layers.items()})
        return [SummaryRow(name, types[name], format_shape(shape),
                           sum(p.numel() for p in child.parameters()), name in self._frozen)
                for (name, child), shape in zip(self.layers.items(), self._shapes, strict=True)]

    def summary(self) -> str:
        """The guide's boxed summary: layer, type, output shape, params; total and trainable.

        Example:
            >>> print(model.summary())  # doctest: +SKIP
        """
        return render_text(self._summary_rows())

    def _repr_html_(self) -> str:
        return render_html(self._summary_rows())

    def __repr__(self) -> str:
        return (f"<Model {len(self.layers)} layers, {self.count_params():,} params, "
                f"loss={self.loss_function!r}, optimizer={self.optimizer!r}, "
                f"lr={self.learning_rate:g}, device={self.device!r}, "
                f"epochs trained={self.epochs_trained}>")

    # ---------------------------------------------------------------- history
    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: epoch, loss, val_loss, accuracy, val_accuracy, lr, seconds,
        samples_per_s (optional columns only where computed), then callbacks' extras."""
        return self.recorder.epochs_frame()

    @property
    def batch_history(self) -> pd.DataFrame:
        """One row per batch: epoch, batch, step, loss, lr."""
        return self.recorder.batches_frame()

    @property
    def runs(self) -> pd.DataFrame:
        """One row per ``fit`` run: its id (the ``run`` column of the histories) and the
        config it was trained with."""
        return self.recorder.runs_frame()

    @property
    def epochs_trained(self) -> int:
        """Epochs recorded so far; the next ``fit`` numbers its first epoch one higher."""
        return self.recorder.last_epoch

    # ---------------------------------------------------------------- inference
    def forward(self, x: Any) -> torch.Tensor:
        """The output for ``x`` on the model's device, in inference mode (no dropout, no grad)."""
        x = as_features(x, self.input_shape, "x").to(self.torch_device)
        with self.lock, self.eval_mode():
            return self.module(x)

    def predict(self, x: Any, batch_size: int = 1024) -> torch.Tensor:
        """The output for ``x`` on the CPU, computed in batches of ``batch_size``.

        Example:
            >>> probs = model.predict(test_x).softmax(dim=1)  # doctest: +SKIP
        """
        check_int("batch_size", batch_size, 1)
        x = as_features(x, self.input_shape, "x")
        with self.lock, self.eval_mode():
            outs = [self.module(x[i:i + batch_size].to(self.torch_device, non_blocking=True))
                    for i in range(0, x.shape[0], batch_size)]
        return torch.cat(outs).cpu()

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Inference mode for the block (no dropout, batch-norm running statistics, no
        autograd), then back to the mode the module was in.

        Example:
            >>> with model.eval_mode():  # doctest: +SKIP
            ...     out = model.module(x)
        """
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.module.train(was_training)
            if was_training:
                self._apply_train_mode()

    # ---------------------------------------------------------------- freezing
    def freeze(self, names: Iterable[str] | str) -> Model:
        """Stop these layers from training (no gradient, no momentum or weight-decay moves).

        Frozen layers also run in inference mode while training (batch-norm statistics
        stay put, dropout is off), as in Keras.
        """
        for name in self._layer_names(names):
            self._frozen.add(name)
            for p in self.layers[name].parameters():
                p.requires_grad_(False)
                p.grad = None
        self._apply_train_mode()
        return self

    def unfreeze(self, names: Iterable[str] | str) -> Model:
        """Let these layers train again."""
        for name in self._layer_names(names):
            self._frozen.discard(name)
            for p in self.layers[name].parameters():
                p.requires_grad_(True)
        self._apply_train_mode()
        return self

    def is_frozen(self, name: str) -> bool:
        """Whether the layer ``name`` is frozen."""
        if not isinstance(name, str):
            raise ValueError(f"name must be a layer name (a string); got {name!r}")
        return self._layer_names([name], "name")[0] in self._frozen

    @property
    def frozen_layers(self) -> set[str]:
        """The names of the frozen layers (a copy)."""
        return set(self._frozen)

    def _apply_train_mode(self) -> None:
        """While training: train mode, but frozen layers in eval mode."""
        if self.module.training:
            for name in self._frozen:
                self.layers[name].eval()

    def train_mode(self) -> None:
        """Switch to training mode (frozen layers stay in inference mode)."""
        self.module.train()
        self._apply_train_mode()

    # ---------------------------------------------------------------- device
    def to_device(self, device: str) -> Model:
        """Move the model and its optimizer state to ``"cpu"``, ``"gpu"`` or ``"auto"``.

        A no-op when already there.
        """
        name, target = resolve_device(device)
        if target == self.torch_device:
            return self
        with self.lock:
            state = self.torch_optimizer.state_dict()
            self.module.to(target)
            for group in self.torch_optimizer.param_groups:
                if "fused" in group:
                    group["fused"] = fused_supported(target) or None
            self.torch_optimizer.load_state_dict(state)  # casts the state onto the new device
            self.device, self.torch_device = name, target
        return self

    def set_learning_rate(self, lr: float) -> Model:
        """Use ``lr`` from the next optimizer step on (every param group).

        Example:
            >>> model.set_learning_rate(0.01).learning_rate  # doctest: +SKIP
            0.01
        """
        lr = check_number("learning_rate", lr, positive=True)
        set_learning_rate(self.torch_optimizer, lr)
        self.learning_rate = lr
        return self

    def set_optimizer(self, name: str, learning_rate: float | None = None) -> Model:
        """Switch to another optimizer (fresh state), e.g. from a dashboard's dropdown."""
        check_optimizer(name)
        lr = self.learning_rate if learning_rate is None else learning_rate
        with self.lock:
            self.torch_optimizer = make_optimizer(name, self.module.parameters(), lr,
                                                  self.weight_decay, self.torch_device)
            self.optimizer, self.learning_rate = name, float(lr)
        return self

    def copy(self, learning_rate: float | None = None) -> Model:
        """A separate model with this one's layers, weights, frozen layers and compile
        settings (``learning_rate`` if given), a fresh optimizer and an empty history.

        Example:
            >>> probe = model.copy(learning_rate=1e-5)  # doctest: +SKIP
        """
        with self.lock:
            module = copy.deepcopy(self.module)
            frozen = sorted(self._frozen)
        twin = Model(module, spec=self.spec, loss=self.loss_function, optimizer=self.optimizer,
                     learning_rate=self.learning_rate if learning_rate is None else learning_rate,
                     weight_decay=self.weight_decay, device=self.device,
                     input_shape=self.input_shape)
        return twin.freeze(frozen)

    # ---------------------------------------------------------------- reset
    def reset_weights(self, seed: int | None = None) -> Model:
        """Fresh weights, fresh optimizer state and an empty history.

        For a spec, ``reset_weights(seed=s)`` gives exactly the weights of
        ``compile(spec, seed=s)``; a plain module gets its layers' ``reset_parameters()``.
        """
        if seed is not None:
            torch.manual_seed(check_seed(seed))
        with self.lock, torch.no_grad():
            if self.spec is not None:
                self.module.load_state_dict(self.spec.build().state_dict())
            else:
                for child in self.module.modules():
                    if hasattr(child, "reset_parameters"):
                        child.reset_parameters()
            self.torch_optimizer.state.clear()
            self.recorder.clear()
        return self

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, extra: tuple[dict, dict[str, torch.Tensor]] | None = None
             ) -> Path:
        """Write the whole model to one file (atomic): parameters, spec, compile settings,
        frozen layers, optimizer state and history. Safetensors + JSON, never pickle.

        Safe while a background run trains: one consistent snapshot is copied under the
        model's lock (between two batches), then written.

        Args:
            path: the file to write (its folder must exist).
            extra: optional ``(meta, tensors)`` stored in the same file, under the same
                checksum, and ignored by :meth:`load` and :func:`load`; read it back with
                ``exburn_nb.io.persist.read_extra(path)`` (training checkpoints use it).

        Returns:
            The absolute path written.

        Example:
            >>> model.save("digits.exburn")  # doctest: +SKIP
            >>> again = xb.load("digits.exburn")  # doctest: +SKIP
        """
        extra = persist.check_extra(extra)
        with self.lock:
            opt = self.torch_optimizer.state_dict()
            model_file = persist.ModelFile(
                params={k: v.detach().clone() for k, v in self.module.state_dict().items()},
                spec=self.spec.to_dict() if self.spec is not None else None,
                module_class=type(self.module).__name__,
                compile={"loss": self.loss_function, "optimizer": self.optimizer,
                         "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                         "device": self.device,
                         "input_shape": list(self.input_shape) if self.input_shape else None},
                frozen=sorted(self._frozen),
                optimizer_groups=[self._own_settings({k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in g.items()})
                                  for g in opt["param_groups"]],
                optimizer_state={idx: {k: v.clone() if isinstance(v, torch.Tensor) else v
                                       for k, v in state.items()}
                                 for idx, state in opt["state"].items()},
                history=self.recorder.to_state(),
                extra=extra)
        return persist.write_model(path, model_file)

    def export(self, path: str | Path) -> Path:
        """Write the network for use outside exburn_nb, in the format the suffix names:

        - ``.onnx``: ONNX, through ``torch.onnx.export`` with torch's default (dynamo,
          ``torch.export``-based) exporter; read it with ``onnxruntime``. Input name: the
          spec's input layer (``"input"`` for a plain module), output name ``"output"``.
          Needs the ``[export]`` extra (``pip install 'exburn_nb[export]'``).
        - ``.pt2``: a ``torch.export`` program (``torch.export.save``); read it with
          ``torch.export.load(path).module()``.

        The network is exported as it predicts (inference mode: no dropout, batch-norm
        running statistics), with a dynamic batch dimension. The model is left as it was
        (mode, device, frozen layers, weights); the file is written atomically. A model
        compiled from a ``torch.nn.Module`` needs its ``input_shape``.

        Returns:
            The absolute path written.

        Raises:
            ValueError: naming the path for a suffix other than ``.onnx``/``.pt2``, a
                directory or a missing folder; for a module without ``input_shape``.
            ImportError: for ``.onnx`` without the ``[export]`` extra.

        Example:
            >>> model.export("digits.onnx")  # doctest: +SKIP
            >>> import onnxruntime  # doctest: +SKIP
            >>> session = onnxruntime.InferenceSession("digits.onnx")  # doctest: +SKIP
            >>> probs = session.run(None, {"input": x.numpy()})[0]  # doctest: +SKIP
        """
        path = exporters.check_export_path(path)
        if self.input_shape is None:
            raise ValueError("export needs the model's input shape: compile the module with "
                             "input_shape=(None, ...), e.g. xb.compile(module, "
                             "input_shape=(None, 784))")
        example = torch.zeros((2, *self.input_shape[1:]), device=self.torch_device)
        name = self.spec.input_name if self.spec is not None else "input"
        with self.lock, self.eval_mode():
            exporters.export_module(self.module, example, path, name)
        return path.resolve()

    def _own_settings(self, group: dict) -> dict:
        """A param group with the model's own weight decay and no Nesterov: what a ``fit``
        run sets for itself is recorded in its config, not in the model."""
        group["weight_decay"] = self.weight_decay
        if "nesterov" in group:
            group["nesterov"] = False
        return group

    def load(self, path: str | Path) -> Model:
        """Load a saved file into this model (same layer names and shapes).

        Parameters, history and frozen layers are loaded; so is the optimizer state when
        the file's optimizer is this model's. A mismatch names the layer and both shapes.
        All or nothing: every value is checked first, so a bad file changes nothing.
        """
        model_file = persist.read_model(path)
        source = f"file {str(path)!r}"
        with persist.damaged_file_errors(source):
            self.load_state(model_file, source)
        return self

    def load_state(self, model_file: persist.ModelFile, source: str) -> None:
        """Load a checked :class:`~exburn_nb.io.persist.ModelFile` (read from ``source``).

        All or nothing: everything is checked and staged first, so a damaged file leaves
        the model as it was.
        """
        self.check_params(model_file.params, source)
        optimizer_state = (self._optimizer_state(model_file)
                           if model_file.compile["optimizer"] == self.optimizer else None)
        history = History.from_state(model_file.history)
        frozen = [n for n in model_file.frozen if n in self.layers]
        with self.lock, torch.no_grad():
            self.module.load_state_dict(model_file.params)
            if optimizer_state is not None:
                self.torch_optimizer.load_state_dict(optimizer_state)
                group = self.torch_optimizer.param_groups[0]
                self.learning_rate = float(group["lr"])
                self.weight_decay = float(group["weight_decay"])
            self.recorder = history
            self.unfreeze(list(self._frozen))
            self.freeze(frozen)

    def check_params(self, params: dict[str, torch.Tensor], source: str) -> None:
        """Raise a ``ValueError`` naming the layer and both shapes on any mismatch."""
        check_param_shapes(self.module.state_dict(), params, source)

    def _optimizer_state(self, model_file: persist.ModelFile) -> dict:
        """The file's optimizer state as a ``state_dict``, checked value by value and then
        on a throwaway optimizer."""
        groups = check_optimizer_groups(model_file.optimizer_groups,
                                        self.torch_optimizer.param_groups)
        check_optimizer_state(self.optimizer, model_file.optimizer_state, groups,
                              [tuple(p.shape) for g in self.torch_optimizer.param_groups
                               for p in g["params"]])
        candidate = {"state": model_file.optimizer_state, "param_groups": groups}
        try:
            make_optimizer(self.optimizer, self.module.parameters(), self.learning_rate,
                           self.weight_decay, self.torch_device).load_state_dict(candidate)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(f"its optimizer state does not fit this model ({exc})") from None
        return candidate

    def load_params(self, params: dict[str, torch.Tensor]) -> Model:
        """Load a parameter dict (from :func:`deserialize_params`) into this model.

        All or nothing: names, shapes and kinds are checked before any value is copied.
        """
        if not isinstance(params, dict):
            raise ValueError("params must be a dict of name -> tensor (from "
                             f"xb.deserialize_params); got {type(params).__name__}")
        self.check_params(params, "params")
        with self.lock, torch.no_grad():
            self.module.load_state_dict(params)
        return self

    def serialize_params(self) -> bytes:
        """The parameters (and buffers) as safetensors bytes, e.g. to send over a network."""
        with self.lock:
            return persist.to_bytes(self.module.state_dict(), {"kind": "params"})


def compile(spec_or_module: Spec | nn.Module, loss: str = "cross_entropy",  # noqa: A001
            optimizer: str = "adam", learning_rate: float = 1e-3, device: str = "cpu",
            weight_decay: float = 0.0, input_shape: tuple | None = None,
            seed: int | None = None) -> Model:
    """Build, initialise and place a model, and set up its optimizer.

    Args:
        spec_or_module: a :class:`Spec` (Glorot-uniform weights, zero biases) or a
            ``torch.nn.Module`` whose named children become the layers (weights kept).
        loss: ``"cross_entropy"``, ``"mse"`` or ``"binary_cross_entropy"``.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``.
        learning_rate: the optimizer's learning rate.
        device: ``"cpu"``, ``"gpu"`` (CUDA, else Apple MPS) or ``"auto"``.
        weight_decay: L2 coefficient (decoupled for adamw).
        input_shape: for a module: ``(None, ...)``, used to check inputs and infer shapes.
        seed: an integer in ``[0, 2**64 - 1]``; seeds torch before initialising, for
            reproducible weights.

    Example:
        >>> spec = xb.input("input", shape=(None, 784)).dense(10, name="output")
        >>> model = xb.compile(spec, loss="cross_entropy", optimizer="adam")  # doctest: +SKIP
    """
    cfg = CompileConfig(loss=loss, optimizer=optimizer, learning_rate=learning_rate,
                        device=device, weight_decay=weight_decay, input_shape=input_shape,
                        seed=seed)
    input_shape = cfg.input_shape
    if seed is not None:
        torch.manual_seed(seed)
    if isinstance(spec_or_module, Spec):
        if input_shape is not None and tuple(input_shape) != spec_or_module.input_shape:
            raise ValueError(f"input_shape {tuple(input_shape)} differs from the spec's "
                             f"{spec_or_module.input_shape}; leave it out for specs")
        spec, module, shape = spec_or_module, spec_or_module.build(), spec_or_module.input_shape
    elif isinstance(spec_or_module, nn.Module):
        if not list(spec_or_module.named_children()):
            raise ValueError("spec_or_module: a torch.nn.Module needs named children (its "
                             "layers), e.g. nn.Sequential(OrderedDict(hidden=nn.Linear(4, 8), ...))")
        spec, module, shape = None, spec_or_module, input_shape
    else:
        raise ValueError("spec_or_module must be an exburn_nb spec (xb.input(...)...) or a "
                         f"torch.nn.Module; got {type(spec_or_module).__name__}")
    return Model(module, spec=spec, loss=loss, optimizer=optimizer, learning_rate=learning_rate,
                 weight_decay=weight_decay, device=device, input_shape=shape)


def load(path: str | Path, device: str | None = None) -> Model:
    """Rebuild a saved model: spec, compile settings, parameters, optimizer state, history.

    ``device`` defaults to the saved one when it exists here, else the CPU.
    Models compiled from a plain ``torch.nn.Module`` hold no code in their file: rebuild
    the module yourself, compile it, and call ``model.load(path)``. Every value in the
    file is checked, and the layers' declared sizes are compared with the stored tensors
    before any real memory is allocated for them.

    Example:
        >>> model = xb.load("digits.exburn")  # doctest: +SKIP
    """
    model_file = persist.read_model(path)
    source = f"file {str(path)!r}"
    if not model_file.spec:
        raise ValueError(f"{source} holds a model built from a torch.nn.Module "
                         f"({model_file.module_class}); files never hold code, so rebuild "
                         "the module, compile it, and call model.load(path)")
    if device is not None:
        resolve_device(device)  # the caller's mistake, not the file's
    with persist.damaged_file_errors(source):
        settings = dict(model_file.compile)
        settings.pop("input_shape")
        saved_device = settings.pop("device")
        if device is None:
            device = saved_device if saved_device in available_devices() else "cpu"
        spec = Spec.from_dict(model_file.spec)
        check_declared_sizes(spec, model_file.params, source)
        model = compile(spec, device=device, **settings)
        model.load_state(model_file, source)
    return model


def check_param_shapes(own: dict[str, torch.Tensor], params: dict[str, torch.Tensor],
                       source: str) -> None:
    """Raise a ``ValueError`` naming the layer and both shapes unless ``params`` has the
    names, shapes and kinds (floating or not) of ``own``."""
    missing = sorted(set(own) - set(params))
    extra = sorted(set(params) - set(own))
    if missing or extra:
        raise ValueError(f"{source} does not fit this model: "
                         + (f"missing {missing[:5]}" if missing else "")
                         + ("; " if missing and extra else "")
                         + (f"unexpected {extra[:5]}" if extra else ""))
    for name, value in params.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: {name} must be a tensor; got {type(value).__name__}")
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"{source} does not fit this model: layer {name.split('.')[0]!r} "
                             f"has {name} of shape {tuple(value.shape)} in the file but "
                             f"{tuple(own[name].shape)} in this model")
        if (value.is_floating_point(), value.is_complex(), value.dtype == torch.bool) != (
                own[name].is_floating_point(), own[name].is_complex(), own[name].dtype == torch.bool):
            raise ValueError(f"{source} does not fit this model: {name} is {value.dtype} in "
                             f"the file but {own[name].dtype} in this model")


def check_declared_sizes(spec: Spec, params: dict[str, torch.Tensor], source: str) -> None:
    """Compare the layers a file's spec declares with its stored tensors, allocating nothing
    (the layers are built on torch's meta device), so a file declaring a huge layer fails
    here instead of in the allocator."""
    try:
        with torch.device("meta"):
            skeleton = spec.build().state_dict()
    except (RuntimeError, ValueError, OverflowError, TypeError, MemoryError) as exc:
        raise ValueError(f"{source}: its spec cannot be built ({exc})") from None
    declared = sum(t.numel() * t.element_size() for t in skeleton.values())
    stored = sum(t.numel() * t.element_size() for t in params.values())
    if declared > stored:
        raise ValueError(f"{source} declares layers of {declared:,} bytes but stores only "
                         f"{stored:,} bytes of parameters (the declared sizes must match "
                         "the stored tensors)")
    check_param_shapes(skeleton, params, source)


def deserialize_params(data: bytes) -> dict[str, torch.Tensor]:
    """The parameter dict from :meth:`Model.serialize_params` bytes."""
    tensors, meta = persist.from_bytes(data, source="params bytes")
    if meta.get("kind") != "params":
        raise ValueError("params bytes hold a whole model file, not serialize_params() output; "
                         "load a model file with xb.load(path) or model.load(path)")
    return tensors
