"""A checkpoint directory belongs to one run, and resume_from takes only checkpoints of
this network: another run's directory is refused before the first step, keep= prunes
only the run's own files, and a foreign network's checkpoint is refused by name."""

import pytest
import torch
from torch_reference import classification_data

import exburn_nb as xb
from exburn_nb.train.checkpoints import checkpoint_files, run_of


def spec(activation="relu", rate=0.25):
    return (xb.input("input", shape=(None, 6)).dense(16, activation=activation, name="hidden")
            .dropout(rate).dense(3, name="output"))


def make(activation="relu", rate=0.25, **kw):
    return xb.compile(spec(activation, rate), learning_rate=0.05, seed=0, **kw)


DATA = classification_data(n=32)
OPTS = dict(batch_size=8, seed=1, verbose=False)


def contents(directory):
    return {p.name: p.read_bytes() for p in checkpoint_files(directory)}


class At(xb.Callback):
    """Calls ``fn(trainer)`` at the end of epoch ``epoch`` (before its checkpoint)."""

    def __init__(self, epoch, fn):
        self.epoch, self.fn = epoch, fn

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            self.fn(self.trainer)


def test_a_fresh_run_into_another_runs_directory_is_refused_before_its_first_step(tmp_path):
    first = make()
    xb.fit(first, DATA, epochs=4, callbacks=[xb.callbacks.checkpoint(1, tmp_path, keep=2)],
           **OPTS)
    kept = contents(tmp_path)
    assert sorted(kept) == ["epoch_0003.exburn", "epoch_0004.exburn"]
    uid = run_of(tmp_path / "epoch_0004.exburn")
    fresh = make()
    before = {k: v.clone() for k, v in fresh.parameters().items()}
    with pytest.raises(ValueError, match=rf"checkpoint directory '{tmp_path}' holds the "
                                         r"checkpoints of another run .*epoch_0003"):
        xb.fit(fresh, DATA, epochs=4, callbacks=[xb.callbacks.checkpoint(1, tmp_path, keep=2)],
               **OPTS)
    assert fresh.batch_history.empty and fresh.history.empty  # not one step
    assert all(torch.equal(before[k], v) for k, v in fresh.parameters().items())
    assert contents(tmp_path) == kept  # the other run's files, untouched
    # resuming from the directory continues that one run, and may write on there
    resumed = make()
    xb.fit(resumed, DATA, resume_from=tmp_path, epochs=6,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path, keep=2)], verbose=False)
    assert resumed.epochs_trained == 6 and resumed.runs["run"].tolist() == [1]
    names = [p.name for p in checkpoint_files(tmp_path)]
    assert names == ["epoch_0005.exburn", "epoch_0006.exburn"]
    assert {run_of(p) for p in checkpoint_files(tmp_path)} == {uid} != {None}


def test_keep_prunes_only_its_own_runs_files_and_resume_refuses_a_mixed_directory(tmp_path):
    other = tmp_path / "other"
    xb.fit(make(), DATA, epochs=9, callbacks=[xb.callbacks.checkpoint(9, other)], **OPTS)
    foreign = (other / "epoch_0009.exburn").read_bytes()
    ours = tmp_path / "ours"

    def another_run_writes_here(trainer):  # a run started beside this one, by mistake
        (ours / "epoch_0009.exburn").write_bytes(foreign)

    model = make()
    xb.fit(model, DATA, epochs=3, callbacks=[At(1, another_run_writes_here),
                                             xb.callbacks.checkpoint(1, ours, keep=1)], **OPTS)
    assert [p.name for p in checkpoint_files(ours)] == ["epoch_0003.exburn", "epoch_0009.exburn"]
    assert (ours / "epoch_0009.exburn").read_bytes() == foreign
    with pytest.raises(ValueError, match=r"holds the checkpoints of 2 runs .*pass the file"):
        xb.fit(make(), DATA, resume_from=ours, verbose=False)


def test_a_run_never_overwrites_another_runs_checkpoint(tmp_path):
    other = tmp_path / "other"
    xb.fit(make(), DATA, epochs=2, callbacks=[xb.callbacks.checkpoint(2, other)], **OPTS)
    foreign = (other / "epoch_0002.exburn").read_bytes()
    ours = tmp_path / "ours"

    def another_run_writes_here(trainer):
        (ours / "epoch_0002.exburn").write_bytes(foreign)

    model = make()
    with pytest.raises(ValueError, match=rf"checkpoint directory '{ours}' holds the "
                                         "checkpoints of another run"):
        xb.fit(model, DATA, epochs=3, callbacks=[At(2, another_run_writes_here),
                                                 xb.callbacks.checkpoint(1, ours)], **OPTS)
    assert (ours / "epoch_0002.exburn").read_bytes() == foreign
    assert model.epochs_trained == 2  # the run holds what it did; the history agrees
    assert model.batch_history["epoch"].max() == 2


def test_a_directory_of_checkpoints_from_before_run_ids_is_not_taken_over(tmp_path):
    model = make()
    xb.fit(model, DATA, epochs=1, **OPTS)
    trainer = xb.Trainer(model, DATA, epochs=1, verbose=False)
    state = {**trainer.state_dict(), "uid": None}  # as written before runs had ids
    xb.train.checkpoints.write(model, tmp_path / "epoch_0001.exburn", state)
    assert run_of(tmp_path / "epoch_0001.exburn") is None
    with pytest.raises(ValueError, match=r"another run \(run \(written before run ids\)"):
        xb.fit(make(), DATA, epochs=1, callbacks=[xb.callbacks.checkpoint(1, tmp_path)], **OPTS)


@pytest.mark.parametrize(("other", "field", "saved", "own"), [
    (dict(activation="tanh"), "spec.layers[0].activation", "'relu'", "'tanh'"),
    (dict(rate=0.5), "spec.layers[1].rate", "0.25", "0.5"),
    (dict(loss="mse"), "loss", "'cross_entropy'", "'mse'"),
    (dict(optimizer="sgd"), "optimizer", "'adam'", "'sgd'"),
])
def test_resume_refuses_a_checkpoint_of_another_network_by_name(tmp_path, other, field, saved,
                                                                own):
    xb.fit(make(), DATA, epochs=1, callbacks=[xb.callbacks.checkpoint(1, tmp_path)], **OPTS)
    path = tmp_path / "epoch_0001.exburn"
    foreign = make(**other)
    before = {k: v.clone() for k, v in foreign.parameters().items()}
    with pytest.raises(ValueError, match=rf"checkpoint '{path}' was written by another "
                                         rf"network: its {field.replace('[', '.').replace(']', '.')}"
                                         rf" is {saved}, this model's is {own}"):
        xb.fit(foreign, DATA, resume_from=path, verbose=False)
    assert all(torch.equal(before[k], v) for k, v in foreign.parameters().items())
    assert foreign.history.empty


@pytest.mark.parametrize("junk", [b"", b"junk", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}",
                                  b"\xff" * 8 + b"{}"])
def test_a_file_whose_run_cannot_be_told_is_neither_overwritten_nor_resumed(tmp_path, junk):
    (tmp_path / "epoch_0001.exburn").write_bytes(junk)
    model = make()
    with pytest.raises(ValueError, match=rf"checkpoint directory '{tmp_path}': cannot tell "
                                         r"which run wrote 'epoch_0001.exburn'"):
        xb.fit(model, DATA, epochs=1, callbacks=[xb.callbacks.checkpoint(1, tmp_path)], **OPTS)
    assert model.history.empty and (tmp_path / "epoch_0001.exburn").read_bytes() == junk
    with pytest.raises(ValueError, match="cannot tell which run wrote"):
        xb.fit(model, DATA, resume_from=tmp_path, verbose=False)
