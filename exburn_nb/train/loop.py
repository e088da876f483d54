"""``fit`` and the :class:`Trainer`: the one training loop, under every engine.

The blocking ``xb.fit``, the runner's background thread, a stacked sweep
(:mod:`exburn_nb.sweep`) and the learning-rate finder all run this loop; what differs is
the step engine (:mod:`exburn_nb.train.engine`) and who listens. The loop owns the run:
every option checked before the first step, seeding, schedules and the learning rate,
stop and pause, Ctrl-C (taken at batch boundaries), the batch rows (recorded as each
batch completes) and epoch rows, validation, callbacks and checkpoints. So the history
always describes the weights the model holds: after a stop, a Ctrl-C, a callback that
raises, or a refused step.

A run has members: one model for ``fit``, several for a stacked engine. Each member has
its own config, schedule, shuffle generator, run id, step count and stop reason; the
options that shape the loop (epochs, batch size, shuffling, accumulation, accuracy, the
non-finite guard) are shared.

Example:
    >>> model = xb.fit(model, (x, y), epochs=10, batch_size=32,
    ...                validation_data=(vx, vy), accuracy=True, seed=0)  # doctest: +SKIP
    >>> model.history.tail()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..base.checks import check_number
from ..base.vocabulary import RESERVED_NAMES, StopReason
from ..core.config import FitConfig
from ..core.data import TensorBatches
from ..core.inputs import batch_source, check_accuracy
from ..core.model import Model
from ..core.optim import make_schedule
from . import checkpoints, launch
from .callbacks import (
    Callback,
    ProgressBar,
    RunDirectory,
    as_callback,
    block_callbacks,
    listens_to_batches,
)
from .captured import make_engine
from .engine import StepEngine
from .members import EpochTally, Member
from .steering import Steering


def check_run_options(model: Model, config: FitConfig) -> None:
    """Raise naming the option when ``config`` cannot train ``model`` (the checks that
    need the model; :class:`FitConfig` checks the rest). Copies no data.

    Example:
        >>> check_run_options(model, FitConfig(nesterov=True))  # an adam model  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: nesterov=True needs optimizer 'sgd'; this model uses 'adam'
    """
    if config.nesterov and model.optimizer != "sgd":
        raise ValueError(f"nesterov=True needs optimizer 'sgd'; this model uses "
                         f"{model.optimizer!r}")
    check_accuracy(model, config.accuracy)


class Trainer(Steering):
    """One run: validated options, the loop, and thread-safe controls.

    ``fit`` builds one and calls :meth:`run`; the runner calls :meth:`run` in a
    background thread. Callbacks reach it as ``self.trainer`` and steer it with
    :meth:`stop`, :meth:`set_learning_rate` and :meth:`log`; other threads also use
    :meth:`pause`, :meth:`resume` and :meth:`call_at_next_batch`
    (:class:`~exburn_nb.train.steering.Steering` holds what callers can ask of a run). Its counters, schedule,
    RNG and callback states are data: :meth:`state_dict` / :meth:`load_state_dict`.

    Args:
        model: a compiled model, or a list of them for an ``engine`` that trains several.
        data: ``(x, y)`` in memory, or a ``torch.utils.data.DataLoader`` / ``Dataset``
            yielding ``(x, y)`` batches (one model only).
        config: a :class:`FitConfig` (one per model for several); ``options`` (its field
            names) override it.
        validation_data: ``(x, y)`` or a loader, evaluated after every epoch.
        callbacks: functions ``metrics -> metrics`` or :class:`Callback` objects.
        verbose: a progress bar and one line per epoch.
        resume_from: a checkpoint file, or a directory of one run's (its newest), written
            by :func:`exburn_nb.train.callbacks.checkpoint`: the interrupted run continues
            exactly. Everything is checked before anything changes.
        engine: the step engine (default: :class:`~exburn_nb.train.engine.SingleEngine`).

    Example:
        >>> trainer = Trainer(model, (x, y), epochs=3, verbose=False)  # doctest: +SKIP
        >>> threading.Thread(target=trainer.run).start(); trainer.stop()  # doctest: +SKIP
    """

    def __init__(self, model: Model | Sequence[Model], data: Any,
                 config: FitConfig | Sequence[FitConfig] | None = None, *,
                 validation_data: Any = None, callbacks: Sequence[Callable | Callback] = (),
                 verbose: bool = True, resume_from: str | Path | None = None,
                 engine: StepEngine | None = None, **options: Any):
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        configs = list(config) if isinstance(config, (list, tuple)) else [config] * len(models)
        for m in models:
            _check_model(m)
        if config is not None and not all(isinstance(c, FitConfig) for c in configs):
            if hasattr(config, "shape") or hasattr(config, "__array__"):
                raise ValueError("data must be one pair: call xb.fit(model, (x, y), ...), "
                                 "not xb.fit(model, x, y)")
            raise ValueError(f"config must be an xb.FitConfig (or pass the options as "
                             f"keywords); got {type(config).__name__}")
        self._resume = None
        if resume_from is not None:
            if len(models) != 1:
                raise ValueError("resume_from resumes a run of one model")
            self._resume = checkpoints.read(resume_from, models[0], options.get("lr_schedule"))
            configs = [configs[0] or self._resume.config]
        configs = [FitConfig.from_options(c, **options) for c in configs]
        for m, c in zip(models, configs, strict=True):
            check_run_options(m, c)
        if not isinstance(callbacks, (list, tuple)):
            raise ValueError(f"callbacks must be a list; got {type(callbacks).__name__}")
        self.callbacks = [as_callback(c, i) for i, c in enumerate(callbacks)]
        if len(models) > 1 and (self.callbacks or self._resume
                                or any(c.run_dir for c in configs)):
            raise ValueError("callbacks, resume_from and run_dir need a run of one model; "
                             "watch a stacked run with trainer.on_epoch_end(fn)")
        if run_dir := configs[0].run_dir:
            self.callbacks.append(RunDirectory(run_dir))
        if verbose:
            self.callbacks.append(ProgressBar())
        self.config = cfg = configs[0]
        if engine is None and len(models) > 1:
            raise ValueError("a run of several models needs their engine (see xb.sweep)")
        super().__init__([Member(m, c, make_schedule(c.lr_schedule, c.epochs))
                          for m, c in zip(models, configs, strict=True)],
                         engine if engine is not None else make_engine(models[0], cfg))
        for member in self.members:
            if member.schedule is not None and cfg.epochs > 0:
                member.schedule(0)  # a bad callable fails here, before any step
        self.source = batch_source(self.model, data, cfg, "data")
        self.val = (batch_source(self.model, validation_data, cfg, "validation_data",
                                 cfg.batch_size * 4) if validation_data is not None else None)
        if len(models) > 1 and not isinstance(self.source, TensorBatches):
            raise ValueError(f"data must be (x, y) in memory for a stacked run; got a "
                             f"{type(data).__name__} (run such configurations with xb.fit)")
        # a new run gets a new id; a resumed one keeps its own (None: from before run ids)
        self.run_uid: str | None = (checkpoints.new_run_id() if self._resume is None
                                    else self._resume.state.get("uid"))
        if self._resume is not None:
            self.check_state(self._resume.state, self._resume.source)
        self._claim_directories(self.run_uid)
        self.batches = self.source.batches
        self.epoch_index = 0  # epochs done in this run
        self._callback_states: list[dict] | None = None  # a resume's, for after on_train_begin
        self._restarting = False  # load_state_dict was called: run() continues that run
        self._open_epoch: tuple[int, EpochTally] | None = None  # the latest epoch begun
        for member in self.members:
            member.step = member.model.recorder.last_step  # steps count on across runs

    # ---------------------------------------------------------------- loop state as data
    def state_dict(self) -> dict:
        """The run's state, enough to continue it exactly: config, run id, position,
        schedule, RNG states and the callbacks' states (tensors kept as tensors).

        Example:
            >>> sorted(Trainer(model, (x, y), verbose=False).state_dict())  # doctest: +SKIP
            ['callbacks', 'config', 'epoch_index', 'rng', 'run', 'schedule', 'step', 'stop_reason', 'uid']
        """
        if len(self.members) != 1:
            raise ValueError("state_dict holds the state of a run of one model")
        member = self.members[0]
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {"config": self.config.to_dict(), "run": member.run_id, "uid": self.run_uid,
                "epoch_index": self.epoch_index, "step": member.step,
                "stop_reason": None if member.stop_reason is None else str(member.stop_reason),
                "schedule": member.schedule.state_dict() if member.schedule else None,
                "rng": {"torch": torch.get_rng_state(), "shuffle": member.generator.get_state(),
                        "cuda": cuda},
                "callbacks": [{"class": type(cb).__name__, "state": state}
                              for cb, state in self._stateful_callbacks()]}

    def check_state(self, state: dict, source: str) -> None:
        """Raise a ``ValueError`` naming ``source`` and the field unless this run can take
        ``state`` (a :meth:`state_dict`, its form checked by
        :func:`~exburn_nb.train.checkpoints.check_run_state`): the states of this run's
        callbacks, each one they accept (:meth:`~exburn_nb.train.callbacks.Callback.
        check_state_dict`), and a schedule state. Changes nothing."""
        stateful = self._stateful_callbacks()
        names = [type(cb).__name__ for cb, _ in stateful]
        if [c["class"] for c in state["callbacks"]] != names:
            raise ValueError(f"resume_from: {source} holds in its run state field 'callbacks' "
                             f"the states of {[c['class'] for c in state['callbacks']]}, but "
                             f"this run has {names}; pass the same callbacks (in the same "
                             "order) as the interrupted run")
        for i, ((cb, _), saved) in enumerate(zip(stateful, state["callbacks"], strict=True)):
            try:
                cb.check_state_dict(saved["state"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: its run state field 'callbacks[{i}].state' "
                                 f"({names[i]}) is not valid: {exc}") from None
        schedule = self.members[0].schedule
        if state["schedule"] is not None and schedule is not None:
            try:
                copy.copy(schedule).load_state_dict(state["schedule"])  # a dry run
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: its run state field 'schedule' is not valid: "
                                 f"{exc}") from None

    def load_state_dict(self, state: dict) -> None:
        """Make :meth:`run` continue the run :meth:`state_dict` describes (its id,
        position, step count, schedule and RNG states) instead of starting a new one; the
        callbacks' states are given to them after ``on_train_begin``. All or nothing:
        everything is checked first (a ``ValueError`` naming the field).

        Example:
            >>> state = trainer.state_dict()  # doctest: +SKIP
            >>> again = Trainer(model, (x, y), state["config"] ...)  # doctest: +SKIP
            >>> again.load_state_dict(state); again.run()  # doctest: +SKIP
        """
        self._check_loadable(state, "state_dict")
        self._apply_state(state)

    def _check_loadable(self, state: dict, source: str) -> None:
        """Every check :meth:`_apply_state` needs, and the checkpoint directories'
        owner (the run goes on as ``state``'s run)."""
        checkpoints.check_run_state(state, source)
        self.check_state(state, source)
        self._claim_directories(state.get("uid"))

    def _apply_state(self, state: dict) -> None:
        """Put ``state`` (checked by :meth:`_check_loadable`) in place; cannot fail."""
        member = self.members[0]
        torch.set_rng_state(state["rng"]["torch"])
        member.generator.set_state(state["rng"]["shuffle"])
        cuda = state["rng"]["cuda"]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        member.run_id, self.epoch_index = state["run"], state["epoch_index"]
        self.run_uid = state.get("uid")
        member.step = state["step"]
        if state["schedule"] is None:
            member.schedule = None
        elif member.schedule is not None:
            member.schedule.load_state_dict(state["schedule"])
        if state["stop_reason"] == StopReason.STOP_TRAINING:  # it had ended: nothing to do
            self.epoch_index = self.config.epochs
        self._callback_states = [c["state"] for c in state["callbacks"]]
        self._restarting = True

    def _claim_directories(self, uid: str | None) -> None:
        """Refuse the run (naming the directory) when a callback would write into a
        directory that holds another run's files (checkpoints, a run directory)."""
        for cb in self.callbacks:
            cb.claim(uid)

    def _stateful_callbacks(self) -> list[tuple[Callback, dict]]:
        return [(cb, state) for cb in self.callbacks if (state := cb.state_dict())]

    # ---------------------------------------------------------------- the loop
    def run(self) -> Model | list[Model]:
        """Train for ``epochs`` epochs (or until stopped); the model (the list of models
        for a run of several)."""
        cfg = self.config
        if cfg.processes > 1 and not torch.distributed.is_initialized():
            raise ValueError(f"processes={cfg.processes}: a data-parallel run starts through "
                             "xb.fit or the Runner (or torchrun), not Trainer.run")
        self._start_run()
        logs = {"model": self.model, "epochs": cfg.epochs, "batches": self.batches,
                "first_epoch": self.model.epochs_trained + 1 - self.epoch_index,
                "validation": self.val is not None, "accuracy": cfg.accuracy,
                "trainer": self}
        if len(self.members) == 1:  # a `with for_every_run(...)` block in this thread
            self.callbacks += [cb for cb in block_callbacks() if cb not in self.callbacks]
        error = None
        try:
            with self.control.deferred_interrupts(self._interrupted):
                for cb in self.callbacks:
                    cb.set_trainer(self)
                for cb in self.callbacks:
                    cb.on_train_begin(logs)
                if self._callback_states is not None:
                    for (cb, _), state in zip(self._stateful_callbacks(),
                                              self._callback_states, strict=True):
                        cb.load_state_dict(state)
                while self.epoch_index < cfg.epochs and not self.control.stopping:
                    if not self._run_epoch(logs["first_epoch"] + self.epoch_index):
                        break
        except KeyboardInterrupt:
            self._interrupted()
        except BaseException as exc:
            error = logs["error"] = exc
            raise
        finally:
            if self._open_epoch is not None:  # an epoch cut short (a raising callback, a
                # Ctrl-C anywhere, even between its last batch and its row): what was done
                self._record_epoch(*self._open_epoch, validate=False)
            if self.stop_reason == StopReason.INTERRUPTED:
                self._warn(f"training interrupted; the model and history hold everything up "
                           f"to the last completed batch (epoch {self.model.epochs_trained})")
            # changes asked for during the last batch still happen, then the engine hands
            # the models back, and every callback ends: one failure does not skip the
            # others (the first is raised after)
            failures = _call_all([*self.control.close(), self.engine.finish,
                                  *(lambda cb=cb: cb.on_train_end(logs)
                                    for cb in self.callbacks)])
            if failures and error is None:
                raise failures[0]
        return self.model if len(self.members) == 1 else [m.model for m in self.members]

    def _interrupted(self) -> None:
        """Ctrl-C: the members still stepping end "interrupted" (a stop asked for before
        counts as the interrupt; a member pruned or refused keeps its reason)."""
        with self.control.lock:
            for m in self.members:
                if m.active and m.stop_reason in (None, StopReason.STOPPED):
                    m.stop_reason = StopReason.INTERRUPTED

    def _start_run(self) -> None:
        """Seed the run (a missing seed is drawn from torch's generator, so the run is
        still reproducible under ``torch.manual_seed``), or put back the state of the run
        being resumed (all or nothing: the model first)."""
        if self._resume is not None:  # checked again: the directories may have changed
            self._check_loadable(self._resume.state, self._resume.source)
            self._resume.restore_model(self.model)  # all or nothing itself
            self._apply_state(self._resume.state)
        if self._restarting:  # a loaded state: the same run goes on with its RNG states
            self.engine.start(None)
            return
        seeds = []
        for m in self.members:
            seed = m.config.seed
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)))
            m.generator.manual_seed(seed)
            m.run_id = m.model.recorder.start_run(m.config.to_dict())
            seeds.append(seed)
        self.engine.start(seeds)

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch and record it; False when the run must end."""
        for i, m in enumerate(self.members):
            if m.schedule is not None and m.active:
                self.engine.set_learning_rate(i, m.schedule(self.epoch_index))
        self._phase = "epoch"
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {"lr": self.engine.learning_rate(0)})
        tally = EpochTally(len(self.members))
        self._open_epoch = (epoch, tally)  # however the run ends, run() records its row
        complete = self._train_batches(epoch, tally)
        if not any(tally.done):
            return False
        metrics = self._record_epoch(epoch, tally, validate=complete)
        if not complete or not any(m.active for m in self.members):
            return False
        self.epoch_index += 1
        for m in self.members:
            if m.schedule is not None:
                m.schedule.advance()
        go_on = self._epoch_callbacks(epoch, metrics[0]) if self.callbacks else True
        self._write_checkpoints()
        return go_on and not self.control.stopping

    def _epoch_callbacks(self, epoch: int, metrics: dict) -> bool:
        """The callbacks' ``on_epoch_end``, then what they returned: extra numbers into the
        row, a new learning rate, ``stop_training``. False when the run is over."""
        metrics["model"] = self.model
        self._phase = "epoch_end"
        for cb in self.callbacks:
            out = cb.on_epoch_end(epoch, metrics)
            if out is not None:
                if not isinstance(out, dict):
                    raise ValueError(f"callback {cb!r} returned {type(out).__name__}; "
                                     "a callback returns the metrics dict or None")
                metrics = out
        self._phase = "epoch"
        extras = {k: v for k, v in metrics.items() if k not in RESERVED_NAMES and
                  isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if extras:
            self.model.recorder.update_last_epoch(extras)
        lr = metrics.get("lr")
        if lr is not None and lr != self.engine.learning_rate(0):
            self._set_lr(check_number("lr returned by a callback", lr, positive=True))
        if metrics.get("stop_training"):  # the run is over by its own rule
            self.members[0].stop_reason = StopReason.STOP_TRAINING
            return False
        return True

    def _record_epoch(self, epoch: int, tally: EpochTally, validate: bool) -> list[dict | None]:
        """Add each member's epoch row (validation only after a complete epoch); the
        metrics per member (None where no batch was done, or the row is already there:
        calling this again records only what is missing). A non-finite validation value
        ends that member (its row is recorded without it). The rows are added however this
        ends (an interrupt while validating included)."""
        cfg, engine = self.config, self.engine
        train_seconds = time.perf_counter() - tally.start
        rows: list[dict | None] = []
        losses = tally.loss_sums()
        correct = tally.correct_counts() if cfg.accuracy else None
        for i, done in enumerate(tally.done):
            metrics = None
            if done and self.members[i].model.recorder.last_epoch < epoch:
                metrics = {"epoch": epoch, "loss": losses[i] / done}
                if correct is not None:
                    metrics["accuracy"] = correct[i] / done
                metrics["lr"] = engine.learning_rate(i)
            rows.append(metrics)
        try:
            if validate and self.val is not None:
                values = engine.evaluate(self.val.epoch(None), cfg.accuracy)
                for i, (metrics, (val_loss, val_acc)) in enumerate(zip(rows, values,
                                                                        strict=True)):
                    if metrics is None or not self.members[i].active:
                        continue
                    found = {"val_loss": val_loss,
                             **({"val_accuracy": val_acc} if cfg.accuracy else {})}
                    if all(math.isfinite(v) for v in found.values()):
                        metrics.update(found)
                    else:
                        self._end_member(i, StopReason.NON_FINITE, f"epoch {epoch}: "
                                         f"validation gave a non-finite value {found}; the "
                                         "epoch is recorded without it and training stopped")
            if validate and rows[0] is not None:
                self._phase = "validation"
                for cb in self.callbacks:
                    cb.on_validation_end(epoch, rows[0])
        finally:
            seconds = time.perf_counter() - tally.start
            for i, metrics in enumerate(rows):
                if metrics is None:
                    continue
                member = self.members[i]
                member.model.recorder.record_epoch(
                    {**metrics, "run": member.run_id, **(self._epoch_logged if i == 0 else {}),
                     "seconds": seconds,
                     "samples_per_s": tally.done[i] / max(train_seconds, 1e-9)})
            self._epoch_logged = {}
        for i, metrics in enumerate(rows):
            if metrics is not None:
                for fn in self._epoch_listeners:
                    fn(i, metrics)
        return rows

    def _write_checkpoints(self) -> None:
        if self._checkpoints:
            with self.model.lock:
                self.control.run_pending()  # an epoch's end is a batch boundary: changes land
        while self._checkpoints:
            path, then = self._checkpoints.pop(0)
            checkpoints.write(self.model, path, self.state_dict())
            if then is not None:
                then()

    def _orders(self) -> torch.Tensor | None:
        """This epoch's sample order: one permutation per member from its own generator
        (stacked into ``(M, n)`` for several), or None to go in sequence."""
        n, cfg = self.source.samples, self.config
        if n is None or (not cfg.shuffle and len(self.members) == 1):
            return None
        device = self.source.x.device
        if not cfg.shuffle:
            return torch.arange(n, device=device).expand(len(self.members), n)
        orders = [torch.randperm(n, generator=m.generator) for m in self.members]
        return (orders[0] if len(orders) == 1 else torch.stack(orders)).to(device)

    def _train_batches(self, epoch: int, tally: EpochTally) -> bool:
        """The batches of one epoch, in accumulation groups, each recorded as it ends;
        True when the epoch ran to its end (a stop after its last batch included)."""
        cfg, engine, control = self.config, self.engine, self.control
        batch_cbs = [cb for cb in self.callbacks if listens_to_batches(cb)]
        read_loss = cfg.terminate_on_nan or bool(batch_cbs)
        guard = cfg.terminate_on_nan
        dim = 0 if len(self.members) == 1 else 1  # several members: batches are (M, B, ...)
        active, running = self._running()
        section = control.batch()
        b = 0
        for group in _groups(self.source.epoch(self._orders()), cfg.accumulate_gradients):
            last = len(group) - 1
            total = group[0][1].shape[dim] if not last else sum(yb.shape[dim]
                                                                 for _, yb in group)
            for i, (xb, yb) in enumerate(group):
                b += 1
                size = engine.samples(yb)
                if batch_cbs:
                    self._phase = "batch_begin"
                    logs = {"epoch": epoch, "batch": b, "batches": self.batches}
                    for cb in batch_cbs:
                        cb.on_batch_begin(b, logs)
                with engine.lock, section:
                    control.run_pending()
                    if self._pruning:
                        active, running = self._apply_member_stops()
                        if not running:
                            return False
                    local = yb.shape[dim]  # this process's share of the group
                    losses, correct = engine.forward_backward(
                        xb, yb, local / total if local != total else 1.0, active)
                    if isinstance(losses, list):  # the engine read them on the host
                        values = losses
                    elif read_loss:  # one host sync; a single model's loss is 0-d
                        values = losses.tolist() if dim else [losses.item()]
                    else:
                        values, losses = None, losses.detach()
                    if guard and not all(map(math.isfinite, values)):
                        for m, v in enumerate(values):
                            if active[m] and not math.isfinite(v):
                                self._refuse(m, epoch, b, f"the loss is {v}")
                        active, running = self._running()
                        if not running:
                            return False
                    if i == last:  # last batch of an accumulation group: step
                        reasons = engine.step(active)
                        if any(reasons):
                            for m, reason in enumerate(reasons):
                                if reason is not None and active[m]:
                                    self._refuse(m, epoch, b, reason)
                            active, running = self._running()
                            if not running:
                                return False
                        for _, member in running:
                            member.step += 1
                    tally.add(values if values is not None else losses, correct, size, active)
                    logged = self._batch_logged
                    rows = values if values is not None else losses.unbind() if dim else (losses,)
                    for m, member in running:
                        member.model.recorder.record_batch(member.run_id, epoch, b, member.step,
                                                           rows[m], engine.learning_rate(m), logged)
                    if logged:
                        self._batch_logged = {}
                if batch_cbs:
                    self._phase = "batch_end"
                    logs = {"epoch": epoch, "batch": b, "batches": self.batches,
                            "step": self.members[0].step, "size": size,
                            "loss": values[0] if values is not None else None,
                            "lr": engine.learning_rate(0)}
                    for cb in batch_cbs:
                        cb.on_batch_end(b, logs)
                    self._phase = "epoch"
                control.wait_while_paused()
                if control.stopping:
                    return self.batches is not None and b == self.batches
        return True

    def _running(self) -> tuple[list[bool], list[tuple[int, Member]]]:
        """Which members still step: a flag per member, and the (index, member) pairs."""
        return ([m.active for m in self.members],
                [(i, m) for i, m in enumerate(self.members) if m.active])

    def _apply_member_stops(self) -> tuple[list[bool], list[tuple[int, Member]]]:
        """Members asked to end (:meth:`stop_member`) stop stepping from this batch on."""
        with self.control.lock:
            self._pruning = False
            pruned = [i for i, m in enumerate(self.members)
                      if m.active and m.stop_reason == StopReason.PRUNED]
            for i in pruned:
                self.members[i].active = False
        for i in pruned:
            self._warn(f"pruned after epoch {self.members[i].model.epochs_trained}", i)
        return self._running()

    def _refuse(self, member: int, epoch: int, batch: int, what: str) -> None:
        """End a member before a step that would leave its weights non-finite (its
        gradients are dropped when the run ends)."""
        self._end_member(member, StopReason.NON_FINITE, f"epoch {epoch}, batch {batch}: "
                         f"{what}; the step was refused, training stopped and the model keeps "
                         "its last finite weights (try a lower learning_rate or clip_norm)")


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        hint = (" (a spec must be compiled first: xb.compile(spec, ...))"
                if type(model).__name__ == "Spec" else "")
        raise ValueError(f"model must be a compiled exburn_nb Model{hint}; "
                         f"got {type(model).__name__}")


def _call_all(functions: list[Callable[[], None]]) -> list[BaseException]:
    """Call every function; the exceptions they raised, in order."""
    failures = []
    for fn in functions:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected, the first is re-raised
            failures.append(exc)
    return failures


def _groups(batches: Iterator, size: int) -> Iterator[list]:
    """Batches in lists of ``size`` (the last may be shorter): one optimizer step each."""
    group: list = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def fit(model: Model, data: Any, config: FitConfig | None = None, *,
        validation_data: Any = None, callbacks: Sequence[Callable | Callback] = (),
        verbose: bool = True, resume_from: str | Path | None = None, **options: Any) -> Model:
    """Train ``model`` on ``data = (x, y)``; returns the same, trained, model.

    Calling ``fit`` again continues: epochs are numbered on, the history grows and the
    optimizer state is kept. Each call is a *run*: its config is recorded
    (``model.runs``) and each history row names its run.

    Args:
        model: a compiled model (:func:`exburn_nb.compile`).
        data: ``(x, y)`` as tensors, NumPy arrays or pandas objects, or a
            ``torch.utils.data.DataLoader`` (or ``Dataset``) of ``(x, y)`` batches.
        config: a :class:`~exburn_nb.core.config.FitConfig` holding the options below.
        validation_data: ``(x, y)`` or a loader, evaluated after every epoch (``val_loss``).
        callbacks: functions ``metrics -> metrics`` or
            :class:`~exburn_nb.train.callbacks.Callback` objects.
        verbose: a progress bar and one line per epoch.
        resume_from: a checkpoint file or a directory of one run's
            (:func:`~exburn_nb.train.callbacks.checkpoint`): continue that run exactly where
            it was saved, with its config (``options`` given here override it). A
            checkpoint of another network (spec, loss, optimizer) or with a damaged field
            is refused by name before anything changes.
        **options: any :class:`~exburn_nb.core.config.FitConfig` field: ``epochs`` (10),
            ``batch_size`` (32), ``shuffle`` (True), ``lr_schedule`` (the guide's tuples
            or a callable ``epoch -> lr``), ``clip_norm``, ``clip_value`` (values are
            clamped first, then the norm clipped), ``weight_decay`` (this run's L2),
            ``accumulate_gradients`` (1; a ragged last group steps on what it has, weighted
            as one batch of those samples), ``accuracy``, ``nesterov`` (sgd only),
            ``terminate_on_nan`` (True: refuse a step whose loss, gradients or updated
            weights are not finite), ``check_data`` (True: refuse NaN/inf data up front),
            ``compile`` (torch.compile), ``precision`` ("fp32" or "bf16"), ``seed``
            (the shuffle order and random draws: the same seed gives the same run),
            ``run_dir`` (a directory the run writes its rows to as it goes and stops on
            a ``STOP`` file: watch it with ``xb.widgets.watch`` or ``xb.read_run``).

    Returns:
        The model, trained in place. A ``KeyboardInterrupt`` also returns it, with a
        warning, holding everything up to the last completed batch.

    A run that ends mid-epoch (a stop, an interrupt, a refused step, a raising callback)
    still records that epoch: its row averages the batches done and has no validation
    values, so the history always describes the weights the model holds.

    Example:
        >>> xb.fit(model, (x, y), epochs=5, accuracy=True, seed=0)  # doctest: +SKIP
        >>> cfg = xb.FitConfig(epochs=5, batch_size=64)
        >>> xb.fit(model, (x, y), cfg, validation_data=(vx, vy))  # doctest: +SKIP
    """
    if launch.wanted(config, options):  # several processes: the same Trainer on each rank
        return launch.fit_in_processes(Trainer, model, data, dict(
            config=config, validation_data=validation_data, callbacks=callbacks,
            verbose=verbose, resume_from=resume_from, **options))
    return Trainer(model, data, config, validation_data=validation_data, callbacks=callbacks,
                   verbose=verbose, resume_from=resume_from, **options).run()
