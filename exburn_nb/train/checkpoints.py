"""Resumable checkpoints: one model file that also holds what its run needs to go on.

A checkpoint is an ordinary model file (``xb.load`` reads it) with an ``extra`` part:
the training loop's own state, as :meth:`~exburn_nb.train.loop.Trainer.state_dict` gives
it (the run's config, id and position, the schedule's state, the RNG states and the
state of every callback that has one). This module stores and reads that dict; it never
looks inside a trainer. ``xb.fit(model, data,
resume_from=path)`` loads it all and continues the run at its next epoch, so a run
interrupted after epoch k (even by SIGKILL) and resumed in a new process ends with the
same weights and history, bit for bit on CPU, as one that never stopped.

Each run has an id (``uid`` in its run state), so a checkpoint directory belongs to one
run: a new run is refused before its first step when its directory holds another run's
files (:func:`claim`), ``keep=`` prunes only the run's own files, and ``resume_from`` of
a directory that holds several runs' files is refused. Resuming checks everything (the
run state's every field, the callbacks' states, the network: spec, loss, optimizer,
shapes) before the model or torch's RNG change: a refusal is a ``ValueError`` naming the
file and the field, and changes nothing.

Example:
    >>> xb.fit(model, data, epochs=20, seed=0,
    ...        callbacks=[xb.callbacks.checkpoint(1, "ckpt", keep=2)])  # doctest: +SKIP
    >>> xb.fit(model, data, resume_from="ckpt")  # after a crash  # doctest: +SKIP
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.checks import check_number
from ..base.vocabulary import StopReason
from ..core.config import FitConfig
from ..core.model import Model
from ..core.spec import Spec
from ..io import persist

# A CUDA (Philox) generator's state: its seed and offset, 8 bytes each (torch.cuda.get_rng_state)
CUDA_RNG_BYTES = 16
KIND = "exburn_nb.checkpoint/2"  # the extra part: {"kind": KIND, "run_state": the dict}
KIND_1 = "exburn_nb.checkpoint/1"  # before: the same values laid out flat (still read)
_NAME = re.compile(r"epoch_(\d+)\.exburn$")
_MAX_DEPTH = 16


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The checkpoint files ``epoch_NNNN.exburn`` in ``directory``, oldest epoch first."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("epoch_*.exburn")
             if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def new_run_id() -> str:
    """A fresh id for a run (16 hex digits), stored in its checkpoints' run state as
    ``uid``: the files a run wrote are told apart by it."""
    return secrets.token_hex(8)


def run_of(path: str | Path) -> str | None:
    """The ``uid`` of the run that wrote the checkpoint at ``path`` (None: written before
    runs had ids), read from the file's header alone; a ``ValueError`` naming the file
    when it is no checkpoint.

    Example:
        >>> run_of("ckpt/epoch_0003.exburn")  # doctest: +SKIP
        '9f2c4e1a0b7d3366'
    """
    extra = persist.read_meta(path).get("extra")
    kind = extra.get("kind") if isinstance(extra, dict) else None
    if kind == KIND_1:
        return None
    state = extra.get("run_state") if kind == KIND else None
    if isinstance(state, dict) and (state.get("uid") is None or isinstance(state["uid"], str)):
        return state.get("uid")
    raise ValueError(f"file {str(path)!r} is not a checkpoint with a readable run id")


def runs_in(directory: str | Path) -> dict[str | None, list[Path]]:
    """The checkpoint files of ``directory`` by the ``uid`` of the run that wrote them
    (oldest epoch first); a ``ValueError`` naming the directory and the file when one
    can't be told.

    Example:
        >>> runs_in("ckpt")  # doctest: +SKIP
        {'9f2c4e1a0b7d3366': [PosixPath('ckpt/epoch_0002.exburn'), PosixPath('ckpt/epoch_0003.exburn')]}
    """
    runs: dict[str | None, list[Path]] = {}
    for path in checkpoint_files(directory):
        try:
            uid = run_of(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"checkpoint directory {str(directory)!r}: cannot tell which run "
                             f"wrote {path.name!r} ({exc})") from None
        runs.setdefault(uid, []).append(path)
    return runs


def _describe(runs: dict[str | None, list[Path]]) -> str:
    """``run 9f2c…: epoch_0009.exburn .. epoch_0010.exburn (2 files)`` per run."""
    return "; ".join(f"run {uid or '(written before run ids)'}: {files[0].name}"
                     + (f" .. {files[-1].name} ({len(files)} files)" if len(files) > 1 else "")
                     for uid, files in runs.items())


def claim(directory: str | Path, uid: str | None) -> list[Path]:
    """The checkpoint files run ``uid`` wrote in ``directory`` (oldest first); a
    ``ValueError`` naming the directory when it holds another run's: a checkpoint
    directory belongs to one run (the run itself, resumed, goes on writing there).

    Example:
        >>> claim("ckpt", new_run_id())  # an empty or missing directory  # doctest: +SKIP
        []
    """
    runs = runs_in(directory) if Path(directory).is_dir() else {}
    others = {k: v for k, v in runs.items() if k != uid}
    if others:
        raise ValueError(f"checkpoint directory {str(directory)!r} holds the checkpoints of "
                         f"another run ({_describe(others)}); a checkpoint directory belongs to "
                         f"one run: give this run another directory, continue that run with "
                         f"resume_from={str(directory)!r}, or remove its files")
    return runs.get(uid, [])


def resolve(path: str | Path) -> Path:
    """``path`` itself, or for a directory its newest checkpoint file (a directory that
    holds the checkpoints of several runs is refused: pass one file)."""
    path = Path(path)
    if path.is_dir():
        runs = runs_in(path)
        if not runs:
            raise ValueError(f"resume_from: directory {str(path)!r} holds no checkpoint "
                             "files (epoch_NNNN.exburn)")
        if len(runs) > 1:
            raise ValueError(f"resume_from: directory {str(path)!r} holds the checkpoints of "
                             f"{len(runs)} runs ({_describe(runs)}); pass the file to resume "
                             "from")
        return next(iter(runs.values()))[-1]
    if not path.exists():
        raise FileNotFoundError(f"resume_from: no file or directory at {str(path)!r}")
    return path


def split_tensors(value: Any, prefix: str, tensors: dict[str, torch.Tensor],
                  depth: int = 0) -> Any:
    """JSON-ready ``value`` with its tensors moved into ``tensors`` (copied).

    Example:
        >>> tensors = {}
        >>> split_tensors({"a": [1, torch.zeros(2)]}, "s", tensors), list(tensors)
        ({'a': [1, {'__tensor__': 's.a.1'}]}, ['s.a.1'])
    """
    if depth > _MAX_DEPTH:
        raise ValueError("the run state is nested too deeply")
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().clone()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {str(k): split_tensors(v, f"{prefix}.{k}", tensors, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", tensors, depth + 1)
                for i, v in enumerate(value)]
    return value


def join_tensors(value: Any, tensors: dict[str, torch.Tensor], source: str,
                 depth: int = 0) -> Any:
    """The inverse of :func:`split_tensors`."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{source}: the run state is nested too deeply")
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise ValueError(f"{source}: the run state refers to a missing tensor "
                                 f"{value['__tensor__']!r}")
            return tensors[value["__tensor__"]]
        return {k: join_tensors(v, tensors, source, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [join_tensors(v, tensors, source, depth + 1) for v in value]
    return value


def write(model: Model, path: str | Path, run_state: dict) -> Path:
    """Save ``model`` with ``run_state`` (a trainer's ``state_dict()``), atomically."""
    tensors: dict[str, torch.Tensor] = {}
    meta = {"kind": KIND, "run_state": split_tensors(run_state, "run", tensors)}
    return model.save(path, extra=(meta, tensors))


@dataclass
class Resume:
    """A checkpoint read back and checked: its config, the loop's state, and the model
    file (loaded into the model by :meth:`restore_model`)."""

    path: Path
    config: FitConfig
    state: dict
    model_file: persist.ModelFile

    @property
    def source(self) -> str:
        """How errors name this checkpoint."""
        return f"checkpoint {str(self.path)!r}"

    def restore_model(self, model: Model) -> None:
        """Load the weights, optimizer state, history and frozen layers (all or nothing)."""
        with persist.damaged_file_errors(self.source):
            model.load_state(self.model_file, self.source)

    def saved_setting(self, name: str) -> float:
        """``"learning_rate"`` or ``"weight_decay"`` as the resumed run goes on with it:
        the saved optimizer's (what :meth:`restore_model` puts back), else the file's
        compile settings.

        Example:
            >>> read("ckpt", model).saved_setting("learning_rate")  # doctest: +SKIP
            0.001
        """
        groups = self.model_file.optimizer_groups
        key = {"learning_rate": "lr", "weight_decay": "weight_decay"}[name]
        value = (groups[0].get(key) if groups and isinstance(groups[0], dict)
                 else self.model_file.compile.get(name))
        try:
            return check_number(name, value, positive=name == "learning_rate")
        except ValueError as exc:
            raise ValueError(f"{self.source} is damaged: {exc}") from None


def _state_of_version_1(meta: dict, tensors: dict[str, torch.Tensor], history: dict,
                        source: str) -> dict:
    """The run state of a checkpoint written before the loop's state became one dict
    (``exburn_nb.checkpoint/1``: the same values, laid out flat)."""
    devices = meta.get("cuda_devices")
    if isinstance(devices, bool) or not isinstance(devices, int) or not (
            0 <= devices <= sum(k.startswith("rng.cuda.") for k in tensors)):
        raise ValueError(f"{source}: its run state field 'cuda_devices' must be the number "
                         f"of CUDA RNG states it holds; got {devices!r:.80}")
    try:
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(devices)]
        steps = (history.get("batches") or {}).get("step") or [0]
        return {"config": meta["config"], "run": meta["run"],
                "epoch_index": meta["epoch_index"], "step": steps[-1],
                "stop_reason": meta["stop_reason"], "schedule": meta["schedule"],
                "rng": {"torch": tensors.get("rng.torch"), "shuffle": tensors.get("rng.shuffle"),
                        "cuda": cuda},
                "callbacks": join_tensors(meta["callbacks"], tensors, source)}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source} is damaged: its run state (version 1) lacks or "
                         f"garbles {exc}") from None


def _field_error(source: str, field: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{source}: its run state field {field!r} must be {expected}; got "
                      f"{_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{value!r:.80}"


def check_run_state(state: dict, source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` and the field unless ``state`` has the form
    of a trainer's ``state_dict()``: counters, the run's id, RNG states this torch can
    take, a known stop reason, callback states (checked before anything changes).

    Example:
        >>> check_run_state({"run": 1}, "state_dict")
        Traceback (most recent call last):
        ValueError: state_dict is damaged: its run state lacks 'epoch_index'
    """
    if not isinstance(state, dict):
        raise ValueError(f"{source} is damaged: its run state is not an object")
    for key in ("run", "epoch_index", "step", "schedule", "stop_reason", "callbacks", "rng"):
        if key not in state:
            raise ValueError(f"{source} is damaged: its run state lacks {key!r}")
    for key in ("run", "epoch_index", "step"):
        if isinstance(state[key], bool) or not isinstance(state[key], int) or state[key] < 0:
            raise _field_error(source, key, "an integer >= 0", state[key])
    uid = state.get("uid")
    if uid is not None and not (isinstance(uid, str) and 0 < len(uid) <= 64):
        raise _field_error(source, "uid", "the run's id (a string) or null", uid)
    rng = state["rng"]
    if not isinstance(rng, dict):
        raise _field_error(source, "rng", "an object of RNG states", rng)
    for name, size in (("torch", torch.get_rng_state().numel()),
                       ("shuffle", torch.Generator().get_state().numel())):
        value = rng.get(name)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8
                and value.shape == (size,)):
            raise _field_error(source, f"rng.{name}", f"a byte tensor of {size} bytes (a CPU "
                               "generator's state)", value)
    cuda = rng.get("cuda")
    if not isinstance(cuda, list) or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8
            and t.shape == (CUDA_RNG_BYTES,) for t in cuda):
        raise _field_error(source, "rng.cuda", f"a list of byte tensors of {CUDA_RNG_BYTES} "
                           "bytes (a CUDA generator's state, one per device)", cuda)
    if state["stop_reason"] is not None and state["stop_reason"] not in set(StopReason):
        raise _field_error(source, "stop_reason", f"null or one of {sorted(StopReason)}",
                           state["stop_reason"])
    if not isinstance(state["callbacks"], list) or not all(
            isinstance(c, dict) and "class" in c and "state" in c for c in state["callbacks"]):
        raise _field_error(source, "callbacks", "a list of {class, state} objects",
                           state["callbacks"])


def _first_difference(saved: Any, own: Any, where: str) -> tuple[str, Any, Any] | None:
    """Where two JSON values first differ, and the two values there (None: equal)."""
    if isinstance(saved, dict) and isinstance(own, dict):
        for key in sorted(set(saved) | set(own), key=str):
            found = _first_difference(saved.get(key), own.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(own, list) and len(saved) == len(own):
        for i, (a, b) in enumerate(zip(saved, own, strict=True)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if saved == own else (where, saved, own)


def check_same_network(model_file: persist.ModelFile, model: Model, source: str) -> None:
    """Raise a ``ValueError`` naming ``source``, the field and both values unless the
    checkpoint was written by a network like ``model``'s: the same spec (layers,
    activations, dropout, ...; for a plain module its class), loss and optimizer.

    Example:
        >>> check_same_network(persist.read_model(path), tanh_model, "checkpoint")  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: resume_from: checkpoint was written by another network: its spec.layers[0].activation is 'relu', this model's is 'tanh'
    """
    def refuse(field: str, saved: Any, own: Any, hint: str = "") -> ValueError:
        return ValueError(f"resume_from: {source} was written by another network: its "
                          f"{field} is {saved!r:.120}, this model's is {own!r:.120}{hint}")

    saved_optimizer = model_file.compile["optimizer"]
    if saved_optimizer != model.optimizer:
        raise refuse("optimizer", saved_optimizer, model.optimizer,
                     f"; compile it with optimizer={saved_optimizer!r} to resume")
    if model_file.compile["loss"] != model.loss_function:
        raise refuse("loss", model_file.compile["loss"], model.loss_function,
                     f"; compile it with loss={model_file.compile['loss']!r} to resume")
    if model.spec is None:
        if model_file.module_class != type(model.module).__name__:
            raise refuse("module_class", model_file.module_class, type(model.module).__name__)
        return
    if model_file.spec is None:
        raise refuse("spec", None, "a spec")
    try:
        saved = Spec.from_dict(model_file.spec).to_dict()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"resume_from: {source}: its spec is not valid ({exc})") from None
    found = _first_difference(saved, model.spec.to_dict(), "spec")
    if found:
        raise refuse(*found)


def read(path: str | Path, model: Model, lr_schedule: Any = None) -> Resume:
    """Read and check the checkpoint at ``path`` (a file, or a directory's newest): its
    kind, its run state's form (:func:`check_run_state`), its config, that it was written
    by a network like ``model``'s (:func:`check_same_network`) and that its weights fit."""
    path = resolve(path)
    source = f"checkpoint {str(path)!r}"
    model_file = persist.read_model(path)
    meta, tensors = model_file.extra or ({}, {})
    if meta.get("kind") == KIND_1:
        state = _state_of_version_1(meta, tensors, model_file.history, source)
    elif meta.get("kind") == KIND and isinstance(meta.get("run_state"), dict):
        state = join_tensors(meta["run_state"], tensors, source)
    else:
        raise ValueError(f"resume_from: {source} is a model file without run state; write "
                         "resumable checkpoints with xb.callbacks.checkpoint(...)")
    check_run_state(state, source)
    if state["epoch_index"] > len(model_file.history["epochs"]):
        raise ValueError(f"{source}: its run state field 'epoch_index' is "
                         f"{state['epoch_index']}, but its history holds "
                         f"{len(model_file.history['epochs'])} epochs")
    try:
        config = FitConfig.from_dict(state.get("config"), lr_schedule=lr_schedule)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: its run state field 'config' is not a valid fit config "
                         f"({exc})") from None
    check_same_network(model_file, model, source)
    model.check_params(model_file.params, source)
    return Resume(path, config, state, model_file)
