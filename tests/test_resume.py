"""Exact resume: a run interrupted after epoch k and resumed (in this process or a new one,
after SIGKILL) ends bit for bit where an uninterrupted run ends."""

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_reference import classification_data

import exburn_nb as xb
from exburn_nb.io.persist import read_extra
from exburn_nb.train.checkpoints import checkpoint_files

TIMING = ["seconds", "samples_per_s"]
REPO = Path(__file__).resolve().parent.parent


def dropout_spec():
    return (xb.input("input", shape=(None, 6)).dense(16, activation="relu", name="hidden")
            .dropout(0.25).dense(3, name="output"))


def make(optimizer):
    return xb.compile(dropout_spec(), optimizer=optimizer, learning_rate=0.05, seed=0)


def options(optimizer):
    return dict(epochs=6, batch_size=8, seed=11, shuffle=True, accumulate_gradients=2,
                lr_schedule=("cosine", 0.05, 1e-4), nesterov=optimizer == "sgd",
                clip_norm=5.0, verbose=False)


class StopAfter(xb.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            self.trainer.stop()


def assert_same_run(a, b):
    for (name, p), q in zip(a.parameters().items(), b.parameters().values(), strict=True):
        assert torch.equal(p, q), name
    pd.testing.assert_frame_equal(a.history.drop(columns=TIMING), b.history.drop(columns=TIMING))
    pd.testing.assert_frame_equal(a.batch_history, b.batch_history)
    sa, sb = a.torch_optimizer.state_dict(), b.torch_optimizer.state_dict()
    for idx, state in sa["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["state"][idx][key]))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_interrupted_run_resumes_exactly_in_process(optimizer, tmp_path):
    x, y = classification_data(n=72)
    vx, vy = classification_data(n=24, seed=1)
    reference = make(optimizer)
    xb.fit(reference, (x, y), validation_data=(vx, vy), **options(optimizer),
           callbacks=[xb.callbacks.early_stopping(patience=3, min_delta=0.0)])

    first = make(optimizer)
    xb.fit(first, (x, y), validation_data=(vx, vy), **options(optimizer),
           callbacks=[xb.callbacks.early_stopping(patience=3, min_delta=0.0),
                      xb.callbacks.checkpoint(1, tmp_path, keep=2), StopAfter(3)])
    assert [p.name for p in checkpoint_files(tmp_path)] == ["epoch_0002.exburn",
                                                            "epoch_0003.exburn"]
    torch.manual_seed(999)  # whatever happened in between must not matter
    resumed = make(optimizer)  # fresh weights: everything comes from the checkpoint
    xb.fit(resumed, (x, y), validation_data=(vx, vy), resume_from=tmp_path, verbose=False,
           callbacks=[xb.callbacks.early_stopping(patience=3, min_delta=0.0)])
    assert_same_run(resumed, reference)
    assert resumed.history["run"].tolist() == [1] * len(reference.history)


def test_a_checkpoint_is_an_ordinary_model_file(tmp_path):
    x, y = classification_data(n=32)
    model = make("adam")
    xb.fit(model, (x, y), epochs=2, batch_size=8, verbose=False,
           callbacks=[xb.callbacks.checkpoint(2, tmp_path)])
    loaded = xb.load(tmp_path / "epoch_0002.exburn")
    assert_same_run(loaded, model)


def test_resume_refuses_different_callbacks_and_plain_model_files(tmp_path):
    x, y = classification_data(n=32)
    model = make("adam")
    xb.fit(model, (x, y), epochs=2, batch_size=8, verbose=False,
           callbacks=[xb.callbacks.early_stopping(5), xb.callbacks.checkpoint(1, tmp_path)])
    with pytest.raises(ValueError, match=r"pass the same callbacks"):
        xb.fit(make("adam"), (x, y), resume_from=tmp_path, verbose=False)
    model.save(tmp_path / "plain.exburn")
    with pytest.raises(ValueError, match="without run state"):
        xb.fit(make("adam"), (x, y), resume_from=tmp_path / "plain.exburn")
    with pytest.raises(FileNotFoundError, match="resume_from"):
        xb.fit(make("adam"), (x, y), resume_from=tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no checkpoint files"):
        xb.fit(make("adam"), (x, y), resume_from=empty)


def test_a_finished_run_resumes_to_nothing(tmp_path):
    x, y = classification_data(n=32)
    model = make("adam")
    xb.fit(model, (x, y), epochs=10, batch_size=8, verbose=False,
           callbacks=[xb.callbacks.early_stopping(0, min_delta=10.0),
                      xb.callbacks.checkpoint(1, tmp_path)])
    assert model.epochs_trained == 2  # stopped by early stopping after its second epoch
    again = make("adam")
    xb.fit(again, (x, y), resume_from=tmp_path, verbose=False,
           callbacks=[xb.callbacks.early_stopping(0, min_delta=10.0)])
    assert again.epochs_trained == 2


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    import exburn_nb as xb
    sys.path.insert(0, {tests!r})
    from torch_reference import classification_data

    mode, folder = sys.argv[1], sys.argv[2]
    x, y = classification_data(n=72)
    vx, vy = classification_data(n=24, seed=1)
    spec = (xb.input("input", shape=(None, 6)).dense(16, activation="relu", name="hidden")
            .dropout(0.25).dense(3, name="output"))
    model = xb.compile(spec, optimizer="adam", learning_rate=0.05, seed=0)

    class KillAt(xb.Callback):
        def on_epoch_begin(self, epoch, logs):
            if epoch == 4:  # checkpoint 3 is on disk: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)

    opts = dict(epochs=6, batch_size=8, seed=11, accumulate_gradients=2, verbose=False,
                lr_schedule=("cosine", 0.05, 1e-4), validation_data=(vx, vy))
    stop = xb.callbacks.early_stopping(patience=3, min_delta=0.0)
    if mode == "first":
        xb.fit(model, (x, y), **opts,
               callbacks=[stop, xb.callbacks.checkpoint(1, folder, keep=2), KillAt()])
    else:
        xb.fit(model, (x, y), resume_from=folder, verbose=False,
               validation_data=(vx, vy), callbacks=[stop])
        model.save(os.path.join(folder, "final.exburn"))
""")


def test_a_run_killed_with_sigkill_resumes_exactly_in_a_new_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    folder = tmp_path / "ckpt"
    first = subprocess.run([sys.executable, str(script), "first", str(folder)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert [p.name for p in checkpoint_files(folder)] == ["epoch_0002.exburn",
                                                          "epoch_0003.exburn"]
    second = subprocess.run([sys.executable, str(script), "resume", str(folder)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    resumed = xb.load(folder / "final.exburn")

    x, y = classification_data(n=72)
    vx, vy = classification_data(n=24, seed=1)
    reference = make("adam")
    xb.fit(reference, (x, y), epochs=6, batch_size=8, seed=11, accumulate_gradients=2,
           verbose=False, lr_schedule=("cosine", 0.05, 1e-4), validation_data=(vx, vy),
           callbacks=[xb.callbacks.early_stopping(patience=3, min_delta=0.0)])
    assert_same_run(resumed, reference)


class LowerAt(xb.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            self.trainer.set_learning_rate(0.001)  # lands before the epoch's checkpoint


def test_a_learning_rate_set_at_an_epoch_end_is_in_that_epochs_checkpoint(tmp_path):
    x, y = classification_data(n=48)
    opts = dict(epochs=5, batch_size=8, seed=2, lr_schedule=("cosine", 0.05, 1e-4),
                verbose=False)
    reference = make("adam")
    xb.fit(reference, (x, y), callbacks=[LowerAt(2)], **opts)
    first = make("adam")
    xb.fit(first, (x, y), callbacks=[LowerAt(2), xb.callbacks.checkpoint(1, tmp_path),
                                     StopAfter(3)], **opts)
    resumed = make("adam")
    xb.fit(resumed, (x, y), resume_from=tmp_path, callbacks=[LowerAt(2)], verbose=False)
    assert_same_run(resumed, reference)


def test_run_settings_stay_in_the_run_and_resume_from_the_config(tmp_path):
    x, y = classification_data(n=32)
    model = xb.compile(dropout_spec(), optimizer="sgd", learning_rate=0.05, seed=0)
    xb.fit(model, (x, y), epochs=2, batch_size=8, weight_decay=0.5, nesterov=True,
           verbose=False, callbacks=[xb.callbacks.checkpoint(1, tmp_path)])
    group = model.torch_optimizer.param_groups[0]
    assert (group["weight_decay"], group["nesterov"]) == (0.0, False)  # the model's own
    loaded = xb.load(tmp_path / "epoch_0002.exburn")  # the file holds the model's settings
    assert loaded.torch_optimizer.param_groups[0]["weight_decay"] == 0.0
    seen = []

    class Spy(xb.Callback):
        def on_epoch_begin(self, epoch, logs):
            g = self.trainer.model.torch_optimizer.param_groups[0]
            seen.append((g["weight_decay"], g["nesterov"]))

    again = xb.compile(dropout_spec(), optimizer="sgd", learning_rate=0.05, seed=0)
    xb.fit(again, (x, y), resume_from=tmp_path / "epoch_0001.exburn", callbacks=[Spy()],
           verbose=False)
    assert seen == [(0.5, True)]  # the run's config, restored with the checkpoint


def test_resuming_into_another_optimizer_is_refused_before_anything_changes(tmp_path):
    x, y = classification_data(n=32)
    xb.fit(make("sgd"), (x, y), epochs=1, batch_size=8, verbose=False,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path)])
    other = make("adam")
    before = {k: v.clone() for k, v in other.parameters().items()}
    with pytest.raises(ValueError, match="compile it with optimizer='sgd' to resume"):
        xb.fit(other, (x, y), resume_from=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in other.parameters().items())


def stopped_after_two_epochs():
    """The data, an uninterrupted 6-epoch reference, and a model stopped after epoch 2
    with its trainer's state_dict."""
    x, y = classification_data(n=72)
    reference = make("adam")
    xb.fit(reference, (x, y), **options("adam"))
    model = make("adam")
    trainer = xb.Trainer(model, (x, y), **options("adam"), callbacks=[StopAfter(2)])
    trainer.run()
    return (x, y), reference, model, trainer.state_dict()


def test_loop_state_is_data_that_a_checkpoint_stores_as_given(tmp_path):
    """Trainer.state_dict() is plain data (JSON values and tensors); a checkpoint written
    from that dict alone, with no trainer, resumes the run exactly."""
    (x, y), reference, first, state = stopped_after_two_epochs()
    assert sorted(state) == ["callbacks", "config", "epoch_index", "rng", "run", "schedule",
                             "step", "stop_reason", "uid"]
    assert isinstance(state["uid"], str) and len(state["uid"]) == 16
    assert (state["run"], state["epoch_index"], state["stop_reason"]) == (1, 2, "stopped")
    assert state["step"] == int(first.batch_history["step"].iloc[-1])
    assert state["schedule"] == {"position": 2, "t_max": 6}
    assert all(isinstance(t, torch.Tensor) for t in (state["rng"]["torch"],
                                                     state["rng"]["shuffle"]))
    path = xb.train.checkpoints.write(first, tmp_path / "by_hand.exburn", state)

    torch.manual_seed(5)
    resumed = make("adam")
    again = xb.Trainer(resumed, (x, y), resume_from=path, verbose=False)
    assert again.epoch_index == 0  # nothing changes before the run starts
    again.run()
    assert_same_run(resumed, reference)
    assert again.state_dict()["epoch_index"] == 6 and again.step == state["step"] * 3


def test_load_state_dict_by_hand_continues_the_same_run():
    """A state loaded into a new trainer of the same model continues that run (its id,
    shuffle order and RNG), not a new one."""
    (x, y), reference, model, state = stopped_after_two_epochs()
    torch.manual_seed(123)  # whatever happens in between must not matter
    again = xb.Trainer(model, (x, y), **options("adam"))
    again.load_state_dict(state)
    again.run()
    assert_same_run(model, reference)
    assert model.runs["run"].tolist() == [1] and again.run_id == 1
    with pytest.raises(ValueError, match="state_dict is damaged: its run state lacks 'rng'"):
        xb.Trainer(model, (x, y), verbose=False).load_state_dict(
            {k: v for k, v in state.items() if k != "rng"})


def test_a_checkpoint_written_before_the_state_dict_layout_still_resumes(tmp_path):
    """Checkpoints of format exburn_nb.checkpoint/1 (the run state laid out flat, as the
    writer before Trainer.state_dict wrote them) resume exactly too."""
    from exburn_nb.train.checkpoints import split_tensors

    x, y = classification_data(n=72)
    reference = make("adam")
    early = [xb.callbacks.early_stopping(patience=3, min_delta=0.0)]
    xb.fit(reference, (x, y), **options("adam"), callbacks=early)
    model = make("adam")
    trainer = xb.Trainer(model, (x, y), **options("adam"), callbacks=[
        xb.callbacks.early_stopping(patience=3, min_delta=0.0), StopAfter(2)])
    trainer.run()
    state = trainer.state_dict()
    tensors = {"rng.torch": state["rng"]["torch"], "rng.shuffle": state["rng"]["shuffle"]}
    meta = {"kind": "exburn_nb.checkpoint/1", "config": state["config"], "run": state["run"],
            "epoch_index": state["epoch_index"], "stop_reason": state["stop_reason"],
            "schedule": state["schedule"], "cuda_devices": 0,
            "callbacks": [{"class": c["class"], "state": split_tensors(c["state"], f"cb.{i}",
                                                                       tensors)}
                          for i, c in enumerate(state["callbacks"])]}
    path = model.save(tmp_path / "epoch_0002.exburn", extra=(meta, tensors))
    resumed = make("adam")
    xb.fit(resumed, (x, y), resume_from=path, verbose=False,
           callbacks=[xb.callbacks.early_stopping(patience=3, min_delta=0.0)])
    assert_same_run(resumed, reference)


# ------------------------------------------------------------ all or nothing
NOT_COUNTS = st.one_of(st.text(max_size=4), st.integers(max_value=-1),
                       st.floats(allow_nan=False), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2))
RNG_SIZE = torch.get_rng_state().numel()
BAD_RNG = st.one_of(
    st.integers(0, RNG_SIZE + 8).filter(lambda n: n != RNG_SIZE).map(
        lambda n: torch.zeros(n, dtype=torch.uint8)),
    st.just(torch.zeros(RNG_SIZE, dtype=torch.float32)),
    st.just(torch.zeros(2, RNG_SIZE // 2, dtype=torch.uint8)), NOT_COUNTS)
BAD_CUDA_RNG = st.one_of(  # a CUDA generator's state is 16 bytes (checkpoints.CUDA_RNG_BYTES)
    st.integers(0, 40).filter(lambda n: n != 16).map(lambda n: torch.zeros(n, dtype=torch.uint8)),
    st.just(torch.zeros(16, dtype=torch.float32)), NOT_COUNTS)
CORRUPTIONS = st.one_of(
    st.tuples(st.sampled_from(["run", "epoch_index", "step", "schedule.position",
                               "schedule.t_max", "callbacks[0].state.wait", "config.epochs",
                               "config.batch_size"]), NOT_COUNTS),
    st.tuples(st.just("config"), st.one_of(st.none(), st.text(max_size=3), st.integers())),
    st.tuples(st.just("epoch_index"), st.integers(3, 10**12)),  # beyond the file's history
    st.tuples(st.sampled_from(["rng.torch", "rng.shuffle"]), BAD_RNG),
    st.tuples(st.just("rng.cuda"), st.one_of(
        st.text(max_size=3), st.lists(st.one_of(st.text(max_size=3), st.integers(), BAD_CUDA_RNG),
                                      min_size=1, max_size=2))),
    st.tuples(st.just("uid"), st.one_of(st.integers(), st.just(""), st.text(min_size=65),
                                        st.lists(st.text(), max_size=1))),
    st.tuples(st.just("stop_reason"), st.text(max_size=5).filter(
        lambda s: s not in {"stopped", "interrupted", "stop_training", "non_finite",
                            "pruned"})),
    st.tuples(st.sampled_from(["callbacks[0].state.best", "callbacks[0].state.best_epoch"]),
              st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=1))),
    st.tuples(st.just("callbacks[0].state.best_epoch"), st.integers(max_value=0)),
    st.tuples(st.just("callbacks"), st.just([])))  # the state of another set of callbacks


def set_field(state, field, value):
    """``state`` with the value at ``field`` ("rng.torch", "callbacks[0].state.wait")
    replaced."""
    state = copy.deepcopy(state)
    *parents, leaf = field.replace("[0]", ".0").split(".")
    target = state
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(leaf) if leaf.isdigit() else leaf] = value
    return state


def named(field):
    """What a refusal of ``field`` must say: the field (a callback's or the schedule's
    state, then the key in it)."""
    for head in ("callbacks[0].state", "schedule", "config"):
        if field.startswith(head + "."):
            return [f"'{head}'", field[len(head) + 1:]]
    return [f"'{field}'"]


def model_state(model):
    return ({k: v.clone() for k, v in model.parameters().items()},
            copy.deepcopy(model.torch_optimizer.state_dict()["state"]),
            model.history.copy(), model.batch_history.copy(), model.runs.copy())


def assert_unchanged(model, before):
    params, optimizer, history, batches, runs = before
    assert all(torch.equal(params[k], v) for k, v in model.parameters().items())
    now = model.torch_optimizer.state_dict()["state"]
    assert now.keys() == optimizer.keys()
    for idx, values in optimizer.items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(now[idx][key]), torch.as_tensor(value))
    pd.testing.assert_frame_equal(model.history, history)
    pd.testing.assert_frame_equal(model.batch_history, batches)
    pd.testing.assert_frame_equal(model.runs, runs)


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    """The data, a real checkpoint's model file and run state (early stopping, a cosine
    schedule), a folder for corrupted copies and a model trained one epoch of its own."""
    folder = tmp_path_factory.mktemp("real")
    x, y = classification_data(n=32)
    source = make("adam")
    xb.fit(source, (x, y), epochs=2, batch_size=8, seed=3, lr_schedule=("cosine", 0.05, 1e-4),
           verbose=False, callbacks=[xb.callbacks.early_stopping(5),
                                     xb.callbacks.checkpoint(2, folder / "ckpt")])
    meta, tensors = read_extra(folder / "ckpt" / "epoch_0002.exburn")
    state = xb.train.checkpoints.join_tensors(meta["run_state"], tensors, "test")
    target = make("adam")
    xb.fit(target, (x, y), epochs=1, batch_size=8, verbose=False)
    return (x, y), source, state, folder, target


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=CORRUPTIONS)
def test_a_refused_resume_changes_nothing(real_checkpoint, corruption):
    """A checkpoint whose run state has any field corrupted (and is written again, signed,
    the way the format allows) is refused with a ValueError naming the file and the field,
    before the model (weights, optimizer state, history) or torch's RNG change."""
    (x, y), source, state, folder, target = real_checkpoint
    field, value = corruption
    path = xb.train.checkpoints.write(source, folder / "bad.exburn",
                                      set_field(state, field, value))
    before, rng = model_state(target), torch.get_rng_state()
    with pytest.raises(ValueError) as refused:
        xb.fit(target, (x, y), resume_from=path, verbose=False,
               callbacks=[xb.callbacks.early_stopping(5)])
    message = str(refused.value)
    assert str(path) in message
    assert all(part in message for part in named(field)), (field, message)
    assert_unchanged(target, before)
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("devices", ["x", 10**12, -1, 1.5, True, None, 1])
def test_a_version_1_checkpoint_with_a_bad_cuda_count_changes_nothing(real_checkpoint, devices):
    (x, y), source, state, folder, target = real_checkpoint
    tensors = {"rng.torch": state["rng"]["torch"], "rng.shuffle": state["rng"]["shuffle"]}
    meta = {"kind": "exburn_nb.checkpoint/1", "config": state["config"], "run": state["run"],
            "epoch_index": state["epoch_index"], "stop_reason": state["stop_reason"],
            "schedule": state["schedule"], "cuda_devices": devices,
            "callbacks": state["callbacks"] and [
                {"class": c["class"], "state": {k: v for k, v in c["state"].items()
                                                if k != "best_state"}}
                for c in state["callbacks"]]}
    path = source.save(folder / f"v1_{devices!s:.6}.exburn", extra=(meta, tensors))
    before, rng = model_state(target), torch.get_rng_state()
    with pytest.raises(ValueError, match=rf"{path}.*'cuda_devices'"):
        xb.fit(target, (x, y), resume_from=path, verbose=False,
               callbacks=[xb.callbacks.early_stopping(5)])
    assert_unchanged(target, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_cuda_generator_state_of_its_size_is_taken_and_others_refused():
    from exburn_nb.train.checkpoints import CUDA_RNG_BYTES, check_run_state
    from exburn_nb.train.loop import Trainer

    model = xb.compile(xb.input("input", shape=(None, 3)).dense(2), seed=0)
    state = Trainer(model, (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)),
                    verbose=False).state_dict()
    state["rng"]["cuda"] = [torch.zeros(CUDA_RNG_BYTES, dtype=torch.uint8)]
    check_run_state(state, "a checkpoint written on a GPU machine")
    if torch.cuda.is_available():  # the size torch itself gives
        assert torch.cuda.get_rng_state().numel() == CUDA_RNG_BYTES
    state["rng"]["cuda"] = [torch.zeros(0, dtype=torch.uint8)]
    with pytest.raises(ValueError, match="rng.cuda"):
        check_run_state(state, "an edited checkpoint")
