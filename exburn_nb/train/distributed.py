"""Data-parallel training on ``torch.distributed``: what each rank runs.

A data-parallel run is the one training loop (:class:`~exburn_nb.train.loop.Trainer`) on
every rank, with :func:`distribute` swapping in what differs:

- the engine, :class:`DistributedEngine`: the model wrapped in ``DistributedDataParallel``
  (``no_sync`` inside gradient accumulation) and ONE ``all_reduce`` per batch carrying
  ``loss * n``, ``n``, the correct count and the control flags (stop, pause, a new learning
  rate from rank 0's inbox), so every rank records the same history and stops on the same
  batch. Non-finite refusals are decided on the reduced loss and on the synchronised
  gradients, so they agree too;
- the data: in-memory data is shuffled by the same seeded permutation on every rank and
  each global batch sliced by rank (:func:`rank_slice`), so N processes train the very
  run one process trains; a ``DataLoader`` is rebuilt on a ``DistributedSampler``
  (shuffled when the loader was, by its own seeded order; ``set_epoch`` every epoch; its
  padding repeats a few samples in training); validation data is split into unpadded
  shards and its metrics are sample-weighted sums over them;
- the controls, :class:`AgreedControl`: a stop asked on one rank (a callback, the kernel)
  only takes effect once the ranks agree on it, at the next reduction;
- the callbacks: every rank runs the user's callbacks (they see the same reduced metrics,
  so their decisions agree; ``stop_training`` and stops asked by a callback are reduced
  anyway, :class:`AgreeOnStop`), so they should not display anything; the progress bar,
  checkpoints and TensorBoard run on rank 0 only (the others meet it at the next
  reduction, and at a barrier at the end). When ``fit`` or the Runner started the ranks,
  rank 0 streams its rows to the caller (:class:`ForwardRows`), where the progress bar
  and the dashboard's callbacks run.

``batch_size`` is the global batch: each rank takes ``batch_size / N`` of it, and the loss
is scaled so the averaged gradient is the full batch's, as in one process.

BatchNorm: each rank normalises with its own shard's statistics and its running
statistics are rank 0's (``DistributedDataParallel`` broadcasts buffers); pass
``sync_batchnorm=True`` to :func:`distribute` for ``torch.nn.SyncBatchNorm``.

Example (run on every rank, after ``torch.distributed.init_process_group``):
    >>> trainer = Trainer(model, (x, y), epochs=3, batch_size=64)  # doctest: +SKIP
    >>> distribute(trainer); trainer.run()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..core.config import FitConfig
from ..core.data import LoaderBatches, TensorBatches
from ..core.model import Model
from .callbacks import Callback, Checkpoint, ProgressBar, TensorBoard
from .control import RunControl
from .engine import SingleEngine, evaluation_sums, mean_metrics

RANK_ZERO_ONLY = (ProgressBar, Checkpoint, TensorBoard)  # callbacks with side effects
PAUSE_POLL_S = 0.5  # a paused run's ranks meet this often (far below the group's timeout)


def rank_slice(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s part of one global batch's sample ``indices``: the parts of the
    ``world`` ranks are disjoint, cover the batch in order, and differ in size by one at
    most.

    Example:
        >>> [rank_slice(torch.arange(5), r, 2).tolist() for r in range(2)]
        [[0, 1, 2], [3, 4]]
    """
    return torch.tensor_split(indices, world)[rank]


class ShardedBatches(TensorBatches):
    """In-memory data: every global batch of the epoch's order, sliced by rank.

    ``global_sizes`` lists each global batch's size (the same every epoch)."""

    def __init__(self, source: TensorBatches, rank: int, world: int):
        super().__init__(source.x, source.y, source.batch_size)
        self.rank, self.world = rank, world
        n, bs = self.samples, self.batch_size
        self.global_sizes = [min(bs, n - lo) for lo in range(0, n, bs)]

    def epoch(self, order: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's part of each batch of ``order`` (None: in sequence)."""
        if order is None:
            order = torch.arange(self.samples, device=self.x.device)
        for lo in range(0, self.samples, self.batch_size):
            idx = rank_slice(order[lo:lo + self.batch_size], self.rank, self.world)
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)


class ShardedLoader(LoaderBatches):
    """A ``DataLoader``'s dataset on a ``DistributedSampler`` (shuffled when the loader
    was), ``batch_size / N`` per rank, ``set_epoch`` from the model's epoch count."""

    def __init__(self, source: LoaderBatches, model: Model, rank: int, world: int,
                 seed: int):
        from torch.utils.data import DataLoader, IterableDataset, RandomSampler
        from torch.utils.data.distributed import DistributedSampler

        loader = source.loader
        if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
            raise ValueError("data: a data-parallel run needs a DataLoader over a sized "
                             "Dataset with a batch_size (an IterableDataset or a "
                             "batch_sampler cannot be split across ranks)")
        if loader.batch_size % world:
            raise ValueError(f"data: the DataLoader's batch_size ({loader.batch_size}) is the "
                             f"global batch and must divide evenly across processes={world}")
        self.sampler = DistributedSampler(loader.dataset, world, rank,
                                          shuffle=isinstance(loader.sampler, RandomSampler),
                                          seed=seed, drop_last=False)
        local = loader.batch_size // world
        super().__init__(DataLoader(loader.dataset, batch_size=local, sampler=self.sampler,
                                    num_workers=loader.num_workers,
                                    collate_fn=loader.collate_fn, drop_last=loader.drop_last,
                                    pin_memory=loader.pin_memory), source.prepare)
        self.model = model
        m = self.sampler.num_samples
        sizes = [min(local, m - lo) for lo in range(0, m, local)]
        if loader.drop_last and sizes and sizes[-1] < local:
            sizes.pop()
        self.global_sizes = [world * s for s in sizes]

    def epoch(self, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor,
                                                                     torch.Tensor]]:
        """This rank's batches of the epoch (the sampler reshuffles by epoch number)."""
        self.sampler.set_epoch(self.model.epochs_trained)
        return super().epoch(order)


def validation_shard(source: TensorBatches | LoaderBatches, rank: int,
                     world: int) -> TensorBatches | LoaderBatches:
    """Rank ``rank``'s unpadded share of the validation data (possibly empty)."""
    if isinstance(source, TensorBatches):
        part = rank_slice(torch.arange(source.samples, device=source.x.device), rank, world)
        return TensorBatches(source.x.index_select(0, part), source.y.index_select(0, part),
                             source.batch_size)
    from torch.utils.data import DataLoader

    loader = source.loader
    return LoaderBatches(DataLoader(loader.dataset, batch_size=loader.batch_size,
                                    sampler=list(range(rank, len(loader.dataset), world)),
                                    collate_fn=loader.collate_fn,
                                    num_workers=loader.num_workers), source.prepare)


class AgreedControl(RunControl):
    """A rank's run controls: a stop is only asked (:attr:`asked`) until the ranks agree
    on it (:meth:`agree`), so :attr:`stopping` turns true on every rank at once."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = False

    def request_stop(self) -> None:
        """Ask for a stop; it takes effect when the ranks next agree."""
        self.asked = True

    def agree(self) -> None:
        """The ranks agreed to stop: end the run after the batch in progress."""
        RunControl.request_stop(self)


class AgreeOnStop(Callback):
    """The last callback of every rank: ``stop_training`` (and a stop asked during the
    epoch's callbacks) from any rank ends the run on every rank at this epoch."""

    def __init__(self, control: AgreedControl):
        self.control = control

    def on_epoch_end(self, epoch: int, metrics: dict) -> dict:
        flags = torch.tensor([float(bool(metrics.get("stop_training"))),
                              float(self.control.asked)], dtype=torch.float64)
        dist.all_reduce(flags)
        if flags[0] > 0:
            metrics["stop_training"] = True
        if flags[1] > 0:
            self.trainer.stop()
            self.control.agree()
        return metrics


class ForwardRows(Callback):
    """Rank 0's rows, sent to the caller as they are recorded (``("rows", dict)`` on
    ``outbox``): the run's start, every batch row with its logs, every epoch row with the
    numbers callbacks added. The caller's dashboard draws them as they come."""

    def __init__(self, outbox: Any):
        self.outbox = outbox
        self.sent_batches = self.sent_epochs = 0

    def on_train_begin(self, logs: dict) -> None:
        recorder = self.trainer.model.recorder
        self.sent_batches, self.sent_epochs = recorder.batch_count, recorder.epoch_count
        self.outbox.put(("rows", {"begin": {"run": self.trainer.run_id,
                                            **{k: logs[k] for k in ("epochs", "batches",
                                                                    "first_epoch")}}}))

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self.outbox.put(("rows", {"epoch_begin": epoch, "logs": dict(logs)}))

    def on_batch_end(self, batch: int, logs: dict) -> None:
        rows = self.trainer.model.recorder.batch_rows_since(self.sent_batches)
        self.sent_batches += len(rows["epoch"])
        self.outbox.put(("rows", {"batches": rows, "logs": dict(logs)}))

    def on_epoch_end(self, epoch: int, metrics: dict) -> dict:
        rows = self.trainer.model.recorder.epoch_rows_since(self.sent_epochs)
        self.sent_epochs += len(rows)
        extras = {k: v for k, v in metrics.items() if isinstance(v, (int, float))
                  and not isinstance(v, bool)}
        self.outbox.put(("rows", {"epochs": rows, "extras": extras}))
        return metrics


class DistributedEngine(SingleEngine):
    """One rank's engine: the model under ``DistributedDataParallel`` and one
    ``all_reduce`` per batch (see the module docstring).

    Args:
        model: this rank's copy of the model.
        config: the run's :class:`FitConfig`.
        global_sizes: the size of every global batch of an epoch, in order.
        inbox: rank 0's end of a pipe from the caller (``("stop",)``, ``("pause",)``,
            ``("resume",)``, ``("lr", value)``), or None.
    """

    def __init__(self, model: Model, config: FitConfig, global_sizes: Sequence[int],
                 inbox: Any = None):
        super().__init__(model, config)
        self.world = dist.get_world_size()
        self.global_sizes = list(global_sizes)
        self.inbox = inbox
        self.ddp = DistributedDataParallel(model.module)
        self.forward = self.ddp
        self.trainer: Any = None
        self.control: AgreedControl | None = None
        self.paused = False
        self._batch = 0

    def bind(self, trainer: Any, control: AgreedControl) -> None:
        """The trainer (for stops and learning-rate changes) and its agreed controls."""
        self.trainer, self.control = trainer, control

    def start(self, seeds: Sequence[int] | None) -> None:
        """As :meth:`SingleEngine.start`, at the start of the run; batches count from 0."""
        super().start(seeds)
        self._batch = 0

    def finish(self) -> None:
        """As :meth:`SingleEngine.finish`; then the ``DistributedDataParallel`` wrapper goes,
        now, while the process group is still registered.

        Its reducer holds the group, and the wrapper can sit in a reference cycle: the
        first one of a process does (its ``__init__`` imports torch's compiler, dynamo,
        where ``torch.fx.wrap`` keeps its own frame in a local, a cycle that holds every
        frame of the import, ``__init__``'s among them). Left to a later collection that comes
        after ``destroy_process_group`` (a ``torchrun`` script's exit), the reducer frees
        the group holding the GIL while gloo's worker threads wait for it, and the rank
        hangs or aborts ("terminate called without an active exception"). A collection
        runs here only when a cycle holds the wrapper."""
        super().finish()
        wrapper = weakref.ref(self.ddp)
        self.ddp, self.forward = None, self.model.module
        if wrapper() is not None:
            gc.collect()

    def samples(self, yb: torch.Tensor) -> int:
        """The global batch's samples (every rank counts the same)."""
        return self.global_sizes[self._batch % len(self.global_sizes)]

    def forward_backward(self, xb: torch.Tensor, yb: torch.Tensor, scale: float,
                         active: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's share of the batch; the gradients are synchronised on the last
        batch of an accumulation group, scaled so they are the global batch's (``scale``
        is recomputed from the global sizes). Returns the global loss and correct count."""
        sizes, k = self.global_sizes, self.config.accumulate_gradients
        j = self._batch % len(sizes)
        self._batch += 1
        first = j - j % k
        group = sizes[first:first + k]
        n, lossfn = yb.shape[0], self.model.loss
        with contextlib.nullcontext() if j == first + len(group) - 1 else self.ddp.no_sync():
            with self.autocast:
                out = self.forward(xb)
                loss = lossfn(out, yb) if n else out.sum() * 0.0  # an empty share: no grads
            (loss * (n * self.world / sum(group))).backward()
        correct = (lossfn.correct(out.detach(), yb) if self.config.accuracy and n
                   else torch.zeros((), device=out.device))
        values = self._reduce([loss.detach().double() * n, n, correct])
        total, count, correct_sum = values[:3]
        return (torch.tensor(total / count, dtype=torch.float64),
                torch.tensor(correct_sum, dtype=torch.float64) if self.config.accuracy else None)

    def evaluate(self, batches: Iterable, accuracy: bool) -> list[tuple[float, float | None]]:
        """Metrics over every rank's shard, weighted by samples."""
        sums = evaluation_sums(self.model, batches, accuracy)
        dist.all_reduce(sums)
        return [mean_metrics(sums, accuracy)]

    # ---------------------------------------------------------------- the control flags
    def _reduce(self, numbers: list) -> list[float]:
        """All-reduce ``numbers`` with this rank's control flags; apply the agreed flags."""
        stop, pause, lr = self._read_inbox()
        device = self.model.torch_device
        buf = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(())
                           for v in (*numbers, stop, pause, lr)])
        dist.all_reduce(buf)
        values = buf.tolist()
        self._apply(*values[-3:])
        while self.paused and not self.control.stopping:  # meet regularly while paused
            stop, pause, lr = self._read_inbox(wait=PAUSE_POLL_S)
            flags = torch.tensor([stop, pause, lr], dtype=torch.float64, device=device)
            dist.all_reduce(flags)
            self._apply(*flags.tolist())
        return values

    def _read_inbox(self, wait: float = 0.0) -> tuple[float, float, float]:
        """This rank's flags: a stop asked, paused (rank 0's inbox decides), a new rate."""
        lr = 0.0
        inbox = self.inbox
        while inbox is not None and inbox.poll(wait):
            wait = 0.0
            try:
                command = inbox.recv()
            except (EOFError, OSError):  # the caller is gone: end the run cleanly
                self.inbox = inbox = None
                self.control.request_stop()
                break
            if command[0] == "stop":
                self.control.request_stop()
            elif command[0] in ("pause", "resume"):
                self.paused = command[0] == "pause"
            elif command[0] == "lr":
                lr = float(command[1])
        return float(self.control.asked), float(self.paused and self.inbox is not None), lr

    def _apply(self, stop: float, pause: float, lr: float) -> None:
        """Every rank does the same with the reduced flags."""
        self.paused = pause > 0
        if lr > 0:
            self.trainer.set_learning_rate(lr)  # lands at the next batch, on every rank
        if stop > 0 and not self.control.stopping:
            self.trainer.stop()
            self.control.agree()


def check_rank_options(config: FitConfig, world: int) -> None:
    """Refuse, by name, options a run of ``world`` ranks cannot take.

    Example:
        >>> check_rank_options(FitConfig(batch_size=32, compile=True), 2)
        Traceback (most recent call last):
        ...
        ValueError: compile=True cannot be combined with processes > 1 yet; pass compile=False
    """
    if config.batch_size % world:
        raise ValueError(f"batch_size must divide evenly across the {world} processes (it is "
                         f"the global batch); got {config.batch_size}")
    if config.compile:
        raise ValueError("compile=True cannot be combined with processes > 1 yet; pass "
                         "compile=False")


def distribute(trainer: Any, inbox: Any = None, sync_batchnorm: bool = False,
               outbox: Any = None) -> None:
    """Make ``trainer`` (built on every rank with the same arguments) one rank of a
    data-parallel run on the initialised default process group (see the module
    docstring); then call ``trainer.run()`` on every rank.

    Args:
        trainer: a :class:`~exburn_nb.train.loop.Trainer` of one model, not yet run.
        inbox: rank 0's end of a pipe carrying the caller's stop, pause and
            learning-rate commands (see :class:`DistributedEngine`).
        sync_batchnorm: convert the model's BatchNorm layers to ``SyncBatchNorm``
            (statistics over the global batch).
        outbox: on rank 0, a queue that receives its rows as they are recorded
            (:class:`ForwardRows`).

    Example:
        >>> distribute(Trainer(model, (x, y), batch_size=64)).run()  # doctest: +SKIP
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg, model = trainer.config, trainer.model
    check_rank_options(cfg, world)
    if sync_batchnorm:
        for name, child in list(model.module.named_children()):
            setattr(model.module, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
    seed = cfg.seed if cfg.seed is not None else 0
    source = (ShardedBatches(trainer.source, rank, world)
              if isinstance(trainer.source, TensorBatches)
              else ShardedLoader(trainer.source, model, rank, world, seed))
    trainer.source, trainer.batches = source, len(source.global_sizes)
    if trainer.val is not None:
        trainer.val = validation_shard(trainer.val, rank, world)
    control = AgreedControl()
    engine = DistributedEngine(model, cfg, source.global_sizes, inbox)
    engine.bind(trainer, control)
    trainer.engine, trainer.control = engine, control
    if rank:
        trainer.callbacks = [cb for cb in trainer.callbacks
                             if not isinstance(cb, RANK_ZERO_ONLY)]
    trainer.emit_warnings = False  # rank 0's messages go back to the caller
    if outbox is not None and rank == 0:
        trainer.callbacks.append(ForwardRows(outbox))
    trainer.callbacks.append(AgreeOnStop(control))
