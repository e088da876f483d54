"""Resumable checkpoints: one model file that also holds what its run needs to go on.

A checkpoint is an ordinary model file (``xb.load`` reads it) with an ``extra`` part:
the run's config, its id and position (epochs done), the schedule's state, the RNG
states (torch's global generator, the run's shuffle generator, CUDA's), and the state of
every callback that has one (early stopping, plateaus). ``xb.fit(model, data,
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
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import FitConfig
from ..io import persist

if TYPE_CHECKING:
    from ..core.model import Model
    from .callbacks import Callback
    from .loop import Trainer

KIND = "exburn_nb.checkpoint/1"
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


def _split(value: Any, prefix: str, tensors: dict[str, torch.Tensor], depth: int = 0) -> Any:
    """JSON-ready ``value`` with its tensors moved into ``tensors`` (by reference)."""
    if depth > _MAX_DEPTH:
        raise ValueError("callback state is nested too deeply")
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().clone()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {str(k): _split(v, f"{prefix}.{k}", tensors, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors, depth + 1) for i, v in enumerate(value)]
    return value


def _join(value: Any, tensors: dict[str, torch.Tensor], source: str, depth: int = 0) -> Any:
    """The inverse of :func:`_split`."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{source}: callback state is nested too deeply")
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise ValueError(f"{source}: callback state refers to a missing tensor "
                                 f"{value['__tensor__']!r}")
            return tensors[value["__tensor__"]]
        return {k: _join(v, tensors, source, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, tensors, source, depth + 1) for v in value]
    return value


def _stateful(callbacks: list[Callback]) -> list[tuple[Callback, dict]]:
    return [(cb, state) for cb in callbacks if (state := cb.state_dict())]


def write(trainer: Trainer, path: str | Path) -> Path:
    """Save ``trainer``'s model with everything its run needs to continue (atomic)."""
    tensors: dict[str, torch.Tensor] = {
        "rng.torch": torch.get_rng_state(), "rng.shuffle": trainer.generator.get_state()}
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(cuda)})
    callbacks = [{"class": type(cb).__name__, "state": _split(state, f"cb.{i}", tensors)}
                 for i, (cb, state) in enumerate(_stateful(trainer.callbacks))]
    meta = {"kind": KIND, "config": trainer.config.to_dict(), "run": trainer.run_id,
            "epoch_index": trainer.epoch_index, "stop_reason": trainer.stop_reason,
            "schedule": trainer.schedule.state_dict() if trainer.schedule is not None else None,
            "cuda_devices": len(cuda), "callbacks": callbacks}
    return trainer.model.save(path, extra=(meta, tensors))


@dataclass
class Resume:
    """A checkpoint read back: its config, and what :class:`Trainer` restores from it."""

    path: Path
    config: FitConfig
    meta: dict
    tensors: dict[str, torch.Tensor]
    model_file: persist.ModelFile

    def restore_run(self, trainer: Trainer) -> None:
        """Load the model state, RNG states, counters and schedule position."""
        source = f"checkpoint {str(self.path)!r}"
        with persist.damaged_file_errors(source):
            trainer.model.load_state(self.model_file, source)
        torch.set_rng_state(self.tensors["rng.torch"])
        trainer.generator.set_state(self.tensors["rng.shuffle"])
        cuda = [self.tensors[f"rng.cuda.{i}"] for i in range(self.meta["cuda_devices"])]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        trainer.run_id, trainer.epoch_index = self.meta["run"], self.meta["epoch_index"]
        trainer.step = trainer.model.recorder.last_step
        if self.meta["schedule"] is None:
            trainer.schedule = None
        elif trainer.schedule is not None:
            trainer.schedule.load_state_dict(self.meta["schedule"])
        if self.meta["stop_reason"] == "stop_training":  # the run had ended: nothing to do
            trainer.epoch_index = trainer.config.epochs
        for name in ("run", "epoch_index"):
            if isinstance(self.meta[name], bool) or not isinstance(self.meta[name], int):
                raise ValueError(f"{source}: {name} must be an integer")

    def restore_callbacks(self, callbacks: list[Callback]) -> None:
        """Give each stateful callback its saved state (after ``on_train_begin``)."""
        source = f"checkpoint {str(self.path)!r}"
        saved, current = self.meta["callbacks"], _stateful(callbacks)
        names = [type(cb).__name__ for cb, _ in current]
        if [s["class"] for s in saved] != names:
            raise ValueError(f"resume_from: the checkpoint holds the state of the callbacks "
                             f"{[s['class'] for s in saved]}, but this run has {names}; pass "
                             "the same callbacks (in the same order) as the interrupted run")
        for (cb, _), entry in zip(current, saved, strict=True):
            cb.load_state_dict(_join(entry["state"], self.tensors, source))


def read(path: str | Path, model: Model, lr_schedule: Any = None) -> Resume:
    """Read and check the checkpoint at ``path`` (a file, or a directory's newest)."""
    path = resolve(path)
    source = f"checkpoint {str(path)!r}"
    model_file = persist.read_model(path)
    meta, tensors = model_file.extra or ({}, {})
    if meta.get("kind") != KIND:
        raise ValueError(f"resume_from: {source} is a model file without run state; write "
                         "resumable checkpoints with xb.callbacks.checkpoint(...)")
    for key in ("config", "run", "epoch_index", "schedule", "stop_reason", "callbacks",
                "cuda_devices"):
        if key not in meta:
            raise ValueError(f"{source} is damaged: its run state lacks {key!r}")
    for key in ("rng.torch", "rng.shuffle"):
        if key not in tensors or tensors[key].dtype != torch.uint8:
            raise ValueError(f"{source} is damaged: {key} is missing or not a byte tensor")
    if not isinstance(meta["callbacks"], list) or not all(
            isinstance(c, dict) and "class" in c and "state" in c for c in meta["callbacks"]):
        raise ValueError(f"{source} is damaged: its callback states are malformed")
    try:
        config = FitConfig.from_dict(meta["config"], lr_schedule=lr_schedule)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: its fit config is not valid ({exc})") from None
    saved_optimizer = model_file.compile["optimizer"]
    if saved_optimizer != model.optimizer:
        raise ValueError(f"resume_from: {source} was trained with optimizer "
                         f"{saved_optimizer!r}, but this model uses {model.optimizer!r}; "
                         f"compile it with optimizer={saved_optimizer!r} to resume")
    model.check_params(model_file.params, source)
    return Resume(path, config, meta, tensors, model_file)
