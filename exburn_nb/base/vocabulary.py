"""The project's vocabulary, each name defined once: run states, stop reasons, the
history's metric columns and the names of the losses, optimizers, devices and precisions.

Every module imports these instead of spelling the strings, so a typo fails loudly and a
new state is one line. The enums are ``str`` enums: ``RunState.FINISHED == "finished"``,
so they go to JSON, pandas and comparisons with plain strings untouched.

Example:
    >>> end_state(StopReason.NON_FINITE)
    <RunState.FAILED: 'failed'>
    >>> end_state(None) == "finished"
    True
"""

from __future__ import annotations

from enum import Enum


class StopReason(str, Enum):
    """Why a run (or one member of a stacked run) ended before its last epoch."""

    STOPPED = "stopped"  # stop() from a thread, a callback or the Stop button
    INTERRUPTED = "interrupted"  # Ctrl-C
    STOP_TRAINING = "stop_training"  # a callback returned stop_training=True: a normal end
    NON_FINITE = "non-finite"  # a step or validation gave NaN/inf: the step was refused
    PRUNED = "pruned"  # a pruner (or stop_member) ended this member early

    def __str__(self) -> str:
        return self.value


class RunState(str, Enum):
    """Where a run is: the runner's states, and an experiment run's end states."""

    IDLE = "idle"
    WAITING = "waiting"  # a watched run directory whose run has not started yet
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    PRUNED = "pruned"
    FAILED = "failed"  # diverged (non-finite) or raised: an experiment run's end
    ERROR = "error"  # the runner's run raised (the error is kept on the runner)

    def __str__(self) -> str:
        return self.value


def end_state(stop_reason: str | None, error: BaseException | str | None = None) -> RunState:
    """The one mapping from how a run ended to its state.

    Args:
        stop_reason: the trainer's :class:`StopReason` (None: it ran all its epochs).
        error: the exception (or its message) the run raised, if any.

    Example:
        >>> [end_state(r).value for r in (None, "stop_training", "stopped", "interrupted",
        ...                               "pruned", "non-finite")]
        ['finished', 'finished', 'stopped', 'stopped', 'pruned', 'failed']
    """
    if error is not None:
        return RunState.FAILED
    if stop_reason in (None, StopReason.STOP_TRAINING):
        return RunState.FINISHED
    return {StopReason.STOPPED: RunState.STOPPED, StopReason.INTERRUPTED: RunState.STOPPED,
            StopReason.PRUNED: RunState.PRUNED,
            StopReason.NON_FINITE: RunState.FAILED}[StopReason(stop_reason)]


class Event(str, Enum):
    """What a runner (``fn(event, runner)``) and an experiment (``fn(event, experiment)``)
    tell their listeners."""

    START = "start"  # a runner's run, or an experiment, starts
    PAUSE = "pause"
    RESUME = "resume"
    END = "end"  # it ended, however it ended (see its state)
    RUN_START = "run_start"  # an experiment's run starts
    EPOCH = "epoch"  # an experiment's run recorded an epoch
    RUN_END = "run_end"  # an experiment's run ended

    def __str__(self) -> str:
        return self.value


# ------------------------------------------------------------------ history columns
METRICS = ("loss", "val_loss", "accuracy", "val_accuracy", "lr")  # what a run computes
EPOCH_COLUMNS = ("epoch", "loss", "val_loss", "accuracy", "val_accuracy", "lr", "seconds",
                 "samples_per_s", "run")
OPTIONAL_COLUMNS = ("val_loss", "accuracy", "val_accuracy", "run")
BATCH_COLUMNS = ("epoch", "batch", "step", "loss", "lr", "run")


def run_metrics(validation: bool, accuracy: bool) -> list[str]:
    """The metrics a run computes, in :data:`METRICS` order.

    Example:
        >>> run_metrics(validation=True, accuracy=False)
        ['loss', 'val_loss', 'lr']
    """
    return [m for m in METRICS if (validation or not m.startswith("val_"))
            and (accuracy or not m.endswith("accuracy"))]


# keys of an epoch's metrics dict that are not numbers a callback may add
CONTROL_KEYS = ("model", "stop_training")
# names a callback's ``trainer.log`` may not take (the loop's own columns and keys)
RESERVED_NAMES = tuple(dict.fromkeys((*EPOCH_COLUMNS, *BATCH_COLUMNS, *CONTROL_KEYS)))

# ------------------------------------------------------------------ option names
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
DEVICES = ("cpu", "gpu", "auto")
PRECISIONS = ("fp32", "bf16")
BACKENDS = ("auto", "gloo", "nccl")  # torch.distributed backends (auto: gloo on CPU, nccl on CUDA)
START_METHODS = ("fork", "spawn")  # how data-parallel ranks are started
# what a model file records of its compile settings (CompileConfig less the seed)
COMPILE_FILE_KEYS = ("loss", "optimizer", "learning_rate", "weight_decay", "device",
                     "input_shape")
