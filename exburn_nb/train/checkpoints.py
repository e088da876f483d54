"""Resumable checkpoints: one model file that also holds what its run needs to go on.

A checkpoint is an ordinary model file (``xb.load`` reads it) with an ``extra`` part:
the training loop's own state, as :meth:`~exburn_nb.train.loop.Trainer.state_dict` gives
it (the run's config, id and position, the schedule's state, the RNG states and the
state of every callback that has one). This module stores and reads that dict; it never
looks inside a trainer. ``xb.fit(model, data,
resume_from=path)`` loads it all and continues the run at its next epoch, so a run
interrupted after epoch k (even by SIGKILL) and resumed in a new process ends with the
same weights and history, bit for bit on CPU, as one that never stopped.

Example:
    >>> xb.fit(model, data, epochs=20, seed=0,
    ...        callbacks=[xb.callbacks.checkpoint(1, "ckpt", keep=2)])  # doctest: +SKIP
    >>> xb.fit(model, data, resume_from="ckpt")  # after a crash  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.checks import check_number
from ..base.vocabulary import StopReason
from ..core.config import FitConfig
from ..core.model import Model
from ..io import persist

KIND = "exburn_nb.checkpoint/2"  # the extra part: {"kind": KIND, "run_state": the dict}
KIND_1 = "exburn_nb.checkpoint/1"  # before: the same values laid out flat (still read)
_NAME = re.compile(r"epoch_(\d+)\.exburn$")
_MAX_DEPTH = 16


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The checkpoint files ``epoch_NNNN.exburn`` in ``directory``, oldest epoch first."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("epoch_*.exburn")
             if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def resolve(path: str | Path) -> Path:
    """``path`` itself, or for a directory its newest checkpoint file."""
    path = Path(path)
    if path.is_dir():
        files = checkpoint_files(path)
        if not files:
            raise ValueError(f"resume_from: directory {str(path)!r} holds no checkpoint "
                             "files (epoch_NNNN.exburn)")
        return files[-1]
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
    try:
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(int(meta["cuda_devices"]))]
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


def check_run_state(state: dict, source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` unless ``state`` has the form of a
    trainer's ``state_dict()``: counters, RNG byte tensors, a known stop reason, callback
    states (checked before anything changes)."""
    for key in ("run", "epoch_index", "step", "schedule", "stop_reason", "callbacks", "rng"):
        if key not in state:
            raise ValueError(f"{source} is damaged: its run state lacks {key!r}")
    for key in ("run", "epoch_index", "step"):
        if isinstance(state[key], bool) or not isinstance(state[key], int) or state[key] < 0:
            raise ValueError(f"{source}: {key} must be an integer >= 0")
    rng = state["rng"]
    if not isinstance(rng, dict) or not all(
            isinstance(rng.get(k), torch.Tensor) and rng[k].dtype == torch.uint8
            for k in ("torch", "shuffle")) or not isinstance(rng.get("cuda"), list):
        raise ValueError(f"{source} is damaged: its RNG states are missing or not byte "
                         "tensors")
    if state["stop_reason"] is not None and state["stop_reason"] not in set(StopReason):
        raise ValueError(f"{source}: unknown stop_reason {state['stop_reason']!r}")
    if not isinstance(state["callbacks"], list) or not all(
            isinstance(c, dict) and "class" in c and "state" in c for c in state["callbacks"]):
        raise ValueError(f"{source} is damaged: its callback states are malformed")


def read(path: str | Path, model: Model, lr_schedule: Any = None) -> Resume:
    """Read and check the checkpoint at ``path`` (a file, or a directory's newest): its
    kind, its run state's form (:func:`check_run_state`), its config and that its weights
    and optimizer fit ``model``."""
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
    try:
        config = FitConfig.from_dict(state.get("config"), lr_schedule=lr_schedule)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: its fit config is not valid ({exc})") from None
    saved_optimizer = model_file.compile["optimizer"]
    if saved_optimizer != model.optimizer:
        raise ValueError(f"resume_from: {source} was trained with optimizer "
                         f"{saved_optimizer!r}, but this model uses {model.optimizer!r}; "
                         f"compile it with optimizer={saved_optimizer!r} to resume")
    model.check_params(model_file.params, source)
    return Resume(path, config, state, model_file)
