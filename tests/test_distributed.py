"""Data-parallel training (issue 22): ``xb.fit(..., processes=2)`` on CPU, gloo, forked
ranks, tiny models. Every test has a timeout (SIGALRM) and checks that no rank outlives it.

Tolerance: a 2-process run equals the 1-process run to 1e-5 (absolute) in weights and
in every loss; the float sums differ only in their order (the gradient all-reduce).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch
import torch.distributed as dist

import exburn_nb as xb
from exburn_nb.core.inputs import batch_source
from exburn_nb.train.distributed import ShardedBatches, ShardedLoader, distribute, rank_slice
from exburn_nb.train.loop import Trainer

TOL = 1e-5
pytestmark = pytest.mark.usefixtures("ranks_timeout")


def data(n=203, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def make():
    return xb.compile(xb.input("input", shape=(None, 4)).dense(8, activation="relu").dense(2),
                      seed=0, learning_rate=0.05)


OPTIONS = dict(epochs=3, batch_size=16, accumulate_gradients=3, clip_norm=0.5,
               lr_schedule=("step", 0.05, 1, 0.5), accuracy=True, seed=1, verbose=False)


def assert_same_run(a, b, tol=TOL):
    for name, value in a.parameters().items():
        assert torch.allclose(value, b.parameters()[name], atol=tol, rtol=0), name
    ba, bb = a.batch_history, b.batch_history
    assert len(ba) == len(bb)
    assert (ba["loss"] - bb["loss"]).abs().max() <= tol
    assert ba["lr"].tolist() == bb["lr"].tolist()
    assert ba["step"].tolist() == bb["step"].tolist()
    ha, hb = a.history, b.history
    assert ha["epoch"].tolist() == hb["epoch"].tolist()
    for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if column in ha:
            assert (ha[column] - hb[column]).abs().max() <= tol, column


# ------------------------------------------------------------------ 1. the same run
def test_two_processes_train_the_same_run_as_one():
    x, y = data()
    val = data(51, seed=1)  # 51 samples: uneven shards (26 + 25)
    one = xb.fit(make(), (x, y), validation_data=val, **OPTIONS)
    two = xb.fit(make(), (x, y), validation_data=val, processes=2, **OPTIONS)
    assert_same_run(one, two)
    # the kernel's model holds rank 0's optimizer state too: a further step agrees
    xb.fit(one, (x, y), **{**OPTIONS, "epochs": 1})
    xb.fit(two, (x, y), **{**OPTIONS, "epochs": 1})
    assert_same_run(one, two)


def test_a_dataloader_trains_the_same_run_as_one_process():
    x, y = data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=16, shuffle=False)
    options = {**OPTIONS, "accumulate_gradients": 1}
    one = xb.fit(make(), loader, **options)
    two = xb.fit(make(), loader, processes=2, **options)
    assert_same_run(one, two)


# ------------------------------------------------------------------ 2. ranks agree
def parameter_spread(metrics):
    """On every rank: the largest difference between this rank's parameters and any
    other rank's (an extra history column)."""
    flat = torch.cat([p.detach().reshape(-1) for p in metrics["model"].module.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    metrics["parameter_spread"] = max(float((g - flat).abs().max()) for g in gathered)
    return metrics


def test_the_ranks_parameters_are_equal_after_every_epoch():
    x, y = data()
    model = xb.fit(make(), (x, y), callbacks=[parameter_spread], processes=2, **OPTIONS)
    assert model.history["parameter_spread"].tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------ 3. the shards
def rank_indices(source_for_rank, order):
    return [torch.cat([xb_[:, 0].long() for xb_, _ in source_for_rank(r).epoch(order)])
            for r in range(2)]


def test_each_epochs_rank_indices_are_disjoint_cover_the_permutation_and_change():
    n = 37
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    base = xb.compile(xb.input("input", shape=(None, 1)).dense(2), seed=0)
    source = batch_source(base, (x, torch.zeros(n, dtype=torch.long)),
                                         xb.FitConfig(batch_size=8))
    g = torch.Generator().manual_seed(3)  # what the loop does: one seeded permutation
    seen = []
    for _ in range(2):
        order = torch.randperm(n, generator=g)
        parts = rank_indices(lambda r: ShardedBatches(source, r, 2), order)
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
        assert sorted(torch.cat(parts).tolist()) == list(range(n))
        # each global batch of the permutation is split between the ranks, in order
        for lo in range(0, n, 8):
            batch = order[lo:lo + 8]
            assert torch.equal(torch.cat([rank_slice(batch, r, 2) for r in range(2)]), batch)
        seen.append(parts)
    assert not torch.equal(seen[0][0], seen[1][0])


class Epochs:
    epochs_trained = 0


def test_a_loaders_shards_come_from_a_distributed_sampler_with_set_epoch():
    n = 30
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    base = xb.compile(xb.input("input", shape=(None, 1)).dense(2), seed=0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=8,
        shuffle=True)
    source = batch_source(base, loader, xb.FitConfig(batch_size=8))
    clock = Epochs()
    shards = [ShardedLoader(source, clock, r, 2, seed=0) for r in range(2)]
    first = rank_indices(lambda r: shards[r], None)
    assert not set(first[0].tolist()) & set(first[1].tolist())
    assert sorted(torch.cat(first).tolist()) == list(range(n))
    assert shards[0].global_sizes == [8, 8, 8, 6]
    clock.epochs_trained = 1
    assert not torch.equal(rank_indices(lambda r: shards[r], None)[0], first[0])


# ------------------------------------------------------------------ 4. validation
def test_validation_metrics_over_uneven_shards_are_the_global_sample_weighted_values():
    x, y = data()
    vx, vy = data(51, seed=2)
    model = xb.fit(make(), (x, y), validation_data=(vx, vy), processes=2, **OPTIONS)
    loss, accuracy = xb.evaluate(model, (vx, vy), accuracy=True)
    row = model.history.iloc[-1]
    assert row["val_loss"] == pytest.approx(loss, abs=1e-6)
    assert row["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(vx, vy),
                                         batch_size=10)  # 51 = 26 + 25 in 3 + 3 batches
    again = xb.fit(make(), (x, y), validation_data=loader, processes=2, **OPTIONS)
    assert again.history["val_loss"].tolist() == pytest.approx(
        model.history["val_loss"].tolist(), abs=1e-6)


# ------------------------------------------------------------------ 5. early stopping
def rank_zero_gets_worse(metrics):
    """A metric that worsens on rank 0 only (improves elsewhere)."""
    epoch = metrics["epoch"]
    metrics["signal"] = float(epoch if dist.get_rank() == 0 else -epoch)
    return metrics


def report_epochs(directory):
    def on_end(metrics):
        (directory / f"rank{dist.get_rank()}").write_text(str(metrics["epoch"]))
        return metrics
    return on_end


def test_early_stopping_decided_on_rank_zero_only_ends_every_rank_at_the_same_epoch(tmp_path):
    x, y = data()
    stopper = xb.callbacks.early_stopping(patience=1, min_delta=0.0, monitor="signal",
                                          mode="min")
    model = xb.fit(make(), (x, y), callbacks=[rank_zero_gets_worse, stopper,
                                              report_epochs(tmp_path)],
                   processes=2, **{**OPTIONS, "epochs": 6})
    assert model.history["epoch"].tolist() == [1, 2]
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "2"


# ------------------------------------------------------------------ 7. checkpoints
class NotingCheckpoint(xb.callbacks.Checkpoint):
    """A checkpoint callback that notes which rank queued each file."""

    def on_epoch_end(self, epoch, metrics):
        with open(self.directory.parent / "writers.txt", "a") as f:
            f.write(f"{dist.get_rank()}\n")
        return super().on_epoch_end(epoch, metrics)


def die_on_rank_one_in_epoch_three(logs):
    if logs["epoch"] == 3 and logs["batch"] == 2 and dist.get_rank() == 1:
        os._exit(1)


class Killer(xb.Callback):
    def on_batch_end(self, batch, logs):
        die_on_rank_one_in_epoch_three(logs)


def test_one_rank_writes_checkpoints_and_a_killed_run_resumes_exactly(tmp_path):
    x, y = data()
    options = {**OPTIONS, "epochs": 4, "processes": 2}
    whole = xb.fit(make(), (x, y), callbacks=[NotingCheckpoint(1, tmp_path / "whole")],
                   **options)
    assert (tmp_path / "writers.txt").read_text() == "0\n" * 4
    assert len(list((tmp_path / "whole").iterdir())) == 4
    killed = make()
    before = {k: v.clone() for k, v in killed.parameters().items()}
    with pytest.raises(RuntimeError, match="rank 1 of 2 exited with code 1"):
        xb.fit(killed, (x, y), callbacks=[xb.callbacks.checkpoint(1, tmp_path / "run"),
                                          Killer()], **options)
    assert all(torch.equal(v, before[k]) for k, v in killed.parameters().items())
    assert sorted(p.name for p in (tmp_path / "run").iterdir())[-1] == "epoch_0002.exburn"
    resumed = xb.fit(make(), (x, y), callbacks=[xb.callbacks.checkpoint(1, tmp_path / "run")],
                     resume_from=tmp_path / "run", **options)
    assert_same_run(whole, resumed, tol=0.0)


# ------------------------------------------------------------------ 8. errors
def boom_on_rank_one(metrics):
    if dist.get_rank() == 1 and metrics["epoch"] == 2:
        raise ValueError("boom on rank 1")
    return metrics


def test_an_exception_on_rank_one_reaches_the_caller_with_its_traceback():
    x, y = data()
    model = make()
    before = {k: v.clone() for k, v in model.parameters().items()}
    with pytest.raises(RuntimeError) as info:
        xb.fit(model, (x, y), callbacks=[boom_on_rank_one], processes=2, **OPTIONS)
    message = str(info.value)
    assert "rank 1 of 2 raised ValueError: boom on rank 1" in message
    assert "Traceback" in message and "boom_on_rank_one" in message
    assert all(torch.equal(v, before[k]) for k, v in model.parameters().items())
    assert model.history.empty


# ------------------------------------------------------------------ interrupt = stop
class InterruptTheCaller(xb.Callback):
    """Rank 0 sends SIGINT to the caller (Jupyter's Interrupt) and to itself (ignored)."""

    def on_batch_end(self, batch, logs):
        if dist.get_rank() == 0 and logs["epoch"] == 1 and batch == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getppid(), signal.SIGINT)


def test_an_interrupt_in_the_caller_stops_every_rank_cleanly():
    x, y = data(2000)
    model = xb.fit(make(), (x, y), callbacks=[InterruptTheCaller(), parameter_spread],
                   processes=2, **{**OPTIONS, "epochs": 50, "batch_size": 8,
                                   "accumulate_gradients": 1})
    assert 3 <= len(model.batch_history) < 250
    assert model.history["epoch"].tolist() == [1]


# ------------------------------------------------------------------ 9. refusals
def test_cuda_initialised_in_the_caller_is_refused_before_forking(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    started = []
    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start",
                        lambda self: started.append(self))
    x, y = data()
    with pytest.raises(ValueError, match="CUDA is already initialised"):
        xb.fit(make(), (x, y), processes=2, **OPTIONS)
    assert started == []


@pytest.mark.parametrize(("options", "message"), [
    ({"processes": 0}, "processes must be an integer >= 1; got 0"),
    ({"processes": 2.0}, "processes must be an integer >= 1; got 2.0"),
    ({"processes": 3}, "batch_size must divide evenly across processes=3"),
    ({"processes": 2, "backend": "mpi"}, "backend must be one of auto, gloo, nccl; got 'mpi'"),
    ({"processes": 2, "start_method": "forkserver"},
     "start_method must be one of fork, spawn; got 'forkserver'"),
    ({"processes": 2, "backend": "nccl"}, "needs 2 GPUs"),
    ({"processes": 2, "compile": True}, "compile=True cannot be combined"),
])
def test_bad_data_parallel_options_are_refused_by_name(options, message):
    x, y = data()
    model = make()
    with pytest.raises(ValueError, match=message):
        xb.fit(model, (x, y), **{**OPTIONS, **options})
    assert model.history.empty


def test_an_unavailable_start_method_is_refused(monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    x, y = data()
    with pytest.raises(ValueError, match="start_method='fork' is not available"):
        xb.fit(make(), (x, y), processes=2, **OPTIONS)


# ------------------------------------------------------------------ 10. torchrun
TORCHRUN_SCRIPT = """
import atexit, os, torch, exburn_nb as xb
# atexit runs last-in first-out: this runs after whatever fit registers
atexit.register(lambda: open(f"rank{{os.environ['RANK']}}.exit", "w").write(
    str(torch.distributed.is_initialized())))
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=g)
y = (x[:, 0] > 0).long()
model = xb.compile(xb.input("input", shape=(None, 4)).dense(2), seed=0)
model = xb.fit(model, (x, y), epochs=2, batch_size=16, seed=0, verbose=False{extra})
assert len(model.history) == 2, model.history
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
open(f"rank{{rank}}.done", "w").write(f"{{world}} {{model.history['loss'].iloc[-1]!r}}")
"""


def run_torchrun(tmp_path, extra=""):
    """Run the tiny script under ``torchrun --standalone --nproc-per-node=2``."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT.format(extra=extra)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}  # a rank that aborts prints its threads' stacks
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(script)], capture_output=True, text=True,
                          timeout=100, env=env, cwd=tmp_path)


def test_fit_under_torchrun_joins_the_group_and_exits_zero(tmp_path):
    done = run_torchrun(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [(tmp_path / f"rank{r}.done").read_text() for r in range(2)]
    assert reports[0] == reports[1] and reports[0].startswith("2 ")  # the same history
    # the group fit made was still up after fit (the script read its rank and world size)
    # and was ended at exit, before the interpreter's teardown (where gloo can abort)
    assert [(tmp_path / f"rank{r}.exit").read_text() for r in range(2)] == ["False", "False"]


def test_a_rank_lets_go_of_its_ddp_wrapper_when_its_run_ends(tmp_path):
    """The wrapper's reducer holds the process group and sits in a reference cycle: left to
    a later collection, after ``destroy_process_group`` (a ``torchrun`` script's exit), it
    freed the group holding the GIL while gloo's workers waited for it, and the rank hung
    or aborted (CI, stop 31). The run's end lets go of it, with the group still up, even
    when a reference cycle holds it."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1),
                            rank=0, world_size=1)
    gc.disable()  # only the run's end may collect the wrapper
    try:
        model = make()
        trainer = Trainer(model, data(), epochs=1, batch_size=16, verbose=False)
        distribute(trainer)
        wrapper = weakref.ref(trainer.engine.ddp)
        cycle = [trainer.engine.ddp]  # as the first wrapper of a process is held
        cycle.append(cycle)
        del cycle
        trainer.run()
        assert wrapper() is None and dist.is_initialized()
        # nothing of the reducer is left on the parameters: a plain fit trains after it
        before = model.parameters()["dense_1.weight"].clone()
        xb.fit(model, data(), epochs=1, batch_size=16, verbose=False)
        assert not torch.equal(model.parameters()["dense_1.weight"], before)
    finally:
        gc.enable()
        dist.destroy_process_group()


def test_a_stale_torchelastic_variable_alone_does_not_join(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "stale")
    monkeypatch.delenv("RANK", raising=False)
    x, y = data()
    model = xb.fit(make(), (x, y), **{**OPTIONS, "epochs": 1})
    assert len(model.history) == 1


def test_spawn_refuses_a_model_it_cannot_rebuild_from_its_file():
    module = torch.nn.Sequential(torch.nn.Linear(4, 2))
    model = xb.compile(module, input_shape=(None, 4), seed=0)
    x, y = data()
    with pytest.raises(ValueError, match="start_method='spawn' rebuilds the model"):
        xb.fit(model, (x, y), processes=2, start_method="spawn", **OPTIONS)


# ------------------------------------------------------------------ BatchNorm
def test_batchnorm_statistics_are_per_rank_and_sync_needs_the_gpu():
    x, y = data(192)

    def bn():
        return xb.compile(xb.input("input", shape=(None, 4)).dense(8).batch_norm()
                          .dense(2), seed=0, learning_rate=0.05)
    options = {**OPTIONS, "batch_size": 32, "accumulate_gradients": 1}
    one = xb.fit(bn(), (x, y), **options)
    per_rank = xb.fit(bn(), (x, y), processes=2, **options)  # each rank: its 16 samples
    assert (one.batch_history["loss"] - per_rank.batch_history["loss"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="sync_batchnorm=True needs a model on the GPU"):
        xb.fit(bn(), (x, y), processes=2, sync_batchnorm=True, **options)


def test_the_progress_bar_and_epoch_lines_come_from_the_caller_not_a_rank(capsys):
    x, y = data()
    xb.fit(make(), (x, y), processes=2, **{**OPTIONS, "verbose": True})
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("Epoch ")]
    assert [line.split(":")[0] for line in lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]


def test_a_trainer_of_several_processes_runs_only_through_fit_or_the_runner():
    x, y = data()
    trainer = xb.Trainer(make(), (x, y), processes=2, **OPTIONS)
    with pytest.raises(ValueError, match="processes=2: a data-parallel run starts through"):
        trainer.run()
    assert trainer.model.history.empty


def test_a_last_batch_smaller_than_the_ranks_leaves_one_rank_an_empty_share():
    x, y = data(33)  # batches of 16, 16 and 1: rank 1's share of the last is empty
    options = {**OPTIONS, "accumulate_gradients": 1}
    one = xb.fit(make(), (x, y), validation_data=data(1, seed=3), **options)
    two = xb.fit(make(), (x, y), validation_data=data(1, seed=3), processes=2, **options)
    assert_same_run(one, two)
