"""Saving and loading: full round trips, loading into a model, parameter bytes, damaged and
hostile files (never unpickled), and atomic writes."""

import functools
import json
import os
import pickle
import tempfile
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_reference import assert_state_equal, classification_data, fit, mlp_spec, snapshot

import exburn_nb as xb
from exburn_nb.io import persist

TIMING = ["seconds", "samples_per_s"]


def trained_model(optimizer: str = "adam", **fit_kwargs) -> xb.Model:
    spec = (xb.input("input", shape=(None, 6)).dense(8, activation="tanh", name="hidden")
            .batch_norm(name="bn").dense(3, name="output"))
    model = xb.compile(spec, optimizer=optimizer, learning_rate=0.01, weight_decay=1e-3, seed=0)
    x, y = classification_data()
    fit(model, (x, y), epochs=2, batch_size=16, shuffle=False, validation_data=(x, y),
        accuracy=True, **fit_kwargs)
    return model


def optimizer_state(model: xb.Model) -> list[dict]:
    return [model.torch_optimizer.state[p] for p in model.module.parameters()]


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_save_and_load_round_trip_everything(tmp_path, optimizer):
    model = trained_model(optimizer)
    model.freeze(["hidden"])
    path = model.save(tmp_path / "model.exburn")
    assert path == tmp_path / "model.exburn"
    again = xb.load(path)
    assert again.spec == model.spec
    assert (again.loss_function, again.optimizer, again.learning_rate, again.weight_decay,
            again.device) == (model.loss_function, optimizer, 0.01, 1e-3, "cpu")
    assert again.frozen_layers == {"hidden"}
    assert not again.module.hidden.weight.requires_grad
    assert_state_equal(again, snapshot(model))  # parameters and batch-norm statistics
    pd.testing.assert_frame_equal(again.history, model.history)
    pd.testing.assert_frame_equal(again.batch_history, model.batch_history)
    assert again.epochs_trained == 2
    for ours, theirs in zip(optimizer_state(model), optimizer_state(again), strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(torch.as_tensor(ours[key]), torch.as_tensor(theirs[key])), key


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_training_on_after_load_follows_the_same_trajectory(tmp_path, optimizer):
    model = trained_model(optimizer)
    model.save(tmp_path / "m.exburn")
    again = xb.load(tmp_path / "m.exburn")
    x, y = classification_data(seed=1)
    for m in (model, again):
        fit(m, (x, y), epochs=2, batch_size=16, shuffle=False, validation_data=(x, y),
            accuracy=True)
    assert_state_equal(again, snapshot(model))
    pd.testing.assert_frame_equal(again.history.drop(columns=TIMING),
                                  model.history.drop(columns=TIMING))
    pd.testing.assert_frame_equal(again.batch_history, model.batch_history)
    assert again.history["epoch"].tolist() == [1, 2, 3, 4]


def test_optimizer_state_matters_for_the_continued_trajectory(tmp_path):
    """The round-trip test above would pass vacuously if state did not matter: it does."""
    model = trained_model("adam")
    model.save(tmp_path / "m.exburn")
    fresh = xb.load(tmp_path / "m.exburn")
    fresh.torch_optimizer.state.clear()
    data = classification_data(seed=1)
    fit(model, data, epochs=1, shuffle=False)
    fit(fresh, data, epochs=1, shuffle=False)
    assert not torch.equal(model.parameters()["output.weight"], fresh.parameters()["output.weight"])


def test_load_into_a_compatible_model(tmp_path):
    model = trained_model()
    model.freeze("bn")
    model.save(tmp_path / "m.exburn")
    other = xb.compile(model.spec, optimizer="adam", learning_rate=0.01, seed=99)
    assert other.load(tmp_path / "m.exburn") is other
    assert_state_equal(other, snapshot(model))
    assert other.frozen_layers == {"bn"}
    pd.testing.assert_frame_equal(other.history, model.history)
    x = torch.randn(7, 6)
    torch.testing.assert_close(other.forward(x), model.forward(x))


def test_load_into_a_model_with_another_optimizer_keeps_its_own_optimizer(tmp_path):
    model = trained_model("adam")
    model.save(tmp_path / "m.exburn")
    other = xb.compile(model.spec, optimizer="sgd", learning_rate=0.5)
    other.load(tmp_path / "m.exburn")
    assert_state_equal(other, snapshot(model))
    assert other.optimizer == "sgd" and other.learning_rate == 0.5
    assert not other.torch_optimizer.state


def test_load_mismatch_names_the_layer_and_both_shapes(tmp_path):
    model = xb.compile(mlp_spec(n_out=3))
    model.save(tmp_path / "m.exburn")
    wider = xb.compile(mlp_spec(n_out=4))  # only the output layer differs
    before = snapshot(wider)
    with pytest.raises(ValueError, match="m.exburn") as info:
        wider.load(tmp_path / "m.exburn")
    message = str(info.value)
    assert "layer 'output'" in message
    assert ("(3, 8)" in message and "(4, 8)" in message) or (
        "(3,)" in message and "(4,)" in message)
    assert_state_equal(wider, before)


def test_load_into_a_model_with_other_layers_names_them(tmp_path):
    xb.compile(mlp_spec()).save(tmp_path / "m.exburn")
    other = xb.compile(xb.input("input", shape=(None, 6)).dense(3, name="only"))
    with pytest.raises(ValueError, match="does not fit") as info:
        other.load(tmp_path / "m.exburn")
    assert "only.weight" in str(info.value) and "hidden.weight" in str(info.value)


def test_module_models_load_into_a_rebuilt_module_but_not_with_xb_load(tmp_path):
    def build():
        return nn.Sequential(OrderedDict(hidden=nn.Linear(6, 8), act=nn.Tanh(),
                                         output=nn.Linear(8, 3)))

    model = xb.compile(build(), input_shape=(None, 6))
    fit(model, classification_data(), epochs=1)
    model.save(tmp_path / "m.exburn")
    with pytest.raises(ValueError, match="rebuild the module"):
        xb.load(tmp_path / "m.exburn")
    again = xb.compile(build(), input_shape=(None, 6)).load(tmp_path / "m.exburn")
    assert_state_equal(again, snapshot(model))
    assert again.epochs_trained == 1


def test_saving_twice_overwrites(tmp_path):
    model = xb.compile(mlp_spec(), seed=0)
    model.save(tmp_path / "m.exburn")
    fit(model, classification_data(), epochs=1)
    model.save(tmp_path / "m.exburn")
    assert_state_equal(xb.load(tmp_path / "m.exburn"), snapshot(model))
    assert os.listdir(tmp_path) == ["m.exburn"]


def test_load_device_defaults_to_the_cpu_here(tmp_path):
    model = xb.compile(mlp_spec())
    model.save(tmp_path / "m.exburn")
    assert xb.load(tmp_path / "m.exburn").device == "cpu"
    assert xb.load(tmp_path / "m.exburn", device="cpu").device == "cpu"


# ----------------------------------------------------------------- parameter bytes
def test_serialize_and_deserialize_params():
    model = trained_model()
    data = model.serialize_params()
    assert isinstance(data, bytes)
    params = xb.deserialize_params(data)
    assert params.keys() == model.module.state_dict().keys()
    for name, value in model.module.state_dict().items():
        assert torch.equal(params[name], value)
    fresh = xb.compile(model.spec, seed=5)
    assert fresh.load_params(params) is fresh
    x = torch.randn(4, 6)
    torch.testing.assert_close(fresh.forward(x), model.forward(x))


def test_load_params_mismatch_is_an_error():
    params = xb.deserialize_params(xb.compile(mlp_spec(n_out=3)).serialize_params())
    with pytest.raises(ValueError, match="'output'"):
        xb.compile(mlp_spec(n_out=4)).load_params(params)


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"garbage" * 10, "not bytes", None])
def test_deserialize_params_rejects_garbage(data):
    with pytest.raises(ValueError, match="params bytes"):
        xb.deserialize_params(data)


def test_a_params_file_is_not_a_model_file(tmp_path):
    path = tmp_path / "params.bin"
    path.write_bytes(xb.compile(mlp_spec()).serialize_params())
    with pytest.raises(ValueError, match="parameters only"):
        xb.load(path)


# ----------------------------------------------------------------- damaged and hostile files
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.exburn"
    trained_model().save(path)
    return path


def assert_unreadable(path):
    with pytest.raises(ValueError) as info:
        xb.load(path)
    assert str(path) in str(info.value)
    model = xb.compile(mlp_spec())
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        model.load(path)
    assert str(path) in str(info.value)
    assert_state_equal(model, before)


@pytest.mark.parametrize("keep", [0, 4, 8, 100, -1])
def test_truncated_and_empty_files(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    assert_unreadable(saved)


def test_corrupted_header_bytes(saved):
    data = bytearray(saved.read_bytes())
    data[10:40] = b"\xff" * 30
    saved.write_bytes(bytes(data))
    assert_unreadable(saved)


def test_corrupted_length_prefix(saved):
    data = bytearray(saved.read_bytes())
    data[0:8] = (2**40).to_bytes(8, "little")
    saved.write_bytes(bytes(data))
    assert_unreadable(saved)


@settings(max_examples=25, deadline=None)
@given(junk=st.binary(min_size=0, max_size=300))
def test_random_garbage_is_a_value_error(tmp_path_factory, junk):
    path = tmp_path_factory.mktemp("junk") / "junk.exburn"
    path.write_bytes(junk)
    with pytest.raises(ValueError, match="junk.exburn"):
        xb.load(path)


@functools.cache
def saved_blob() -> bytes:
    """One saved file's bytes (with optimizer state and history), made once."""
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, classification_data(n=8), epochs=1)
    with tempfile.TemporaryDirectory() as folder:
        return model.save(Path(folder) / "m.exburn").read_bytes()


@pytest.mark.filterwarnings("ignore:.*optimizer groups differ")  # a damaged group list may warn
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_flipped_byte_never_crashes_with_anything_but_a_value_error(tmp_path_factory, data):
    """Anywhere in the file: either a clear ValueError naming it, or a loadable model."""
    path = tmp_path_factory.mktemp("flip") / "m.exburn"
    blob = bytearray(saved_blob())
    header_end = 8 + int.from_bytes(blob[:8], "little")
    index = data.draw(st.one_of(st.integers(0, header_end - 1), st.integers(0, len(blob) - 1)))
    blob[index] ^= data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 255]))
    path.write_bytes(bytes(blob))
    for load in (xb.load, xb.compile(mlp_spec()).load):
        try:
            loaded = load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
        else:
            assert isinstance(loaded, xb.Model)


def resave(path, change):
    """Rewrite a saved file after ``change(tensors, meta)``: well-formed, but damaged."""
    tensors, meta = persist.read_file(path)
    change(tensors, meta)
    meta.pop("format")
    persist.write_file(path, tensors, meta)


@pytest.mark.parametrize("change", [
    lambda t, m: m["compile"].update(optimizer="bogus"),
    lambda t, m: m["compile"].update(learning_rate=-1),
    lambda t, m: m["compile"].update(surprise=1),
    lambda t, m: m["compile"].pop("device"),
    lambda t, m: m.pop("compile"),
    lambda t, m: m["spec"]["layers"][0].update(units="eight"),
    lambda t, m: m.update(optimizer_groups=[{}]),
    lambda t, m: m.update(history=[1, 2]),
    lambda t, m: m.update(frozen=5),
    lambda t, m: t.update({"optim.x": torch.zeros(1)}),
    lambda t, m: t.update({"batch.step": torch.tensor([float("inf")])}),
], ids=["optimizer", "lr", "extra key", "no device", "no compile", "spec", "groups",
        "history", "frozen", "optim key", "batch step"])
def test_damaged_metadata_is_a_value_error_naming_the_file(saved, change):
    resave(saved, change)
    with pytest.raises(ValueError, match="is damaged|does not fit") as info:
        xb.load(saved)
    assert str(saved) in str(info.value)


def test_a_bad_device_argument_is_not_blamed_on_the_file(saved):
    with pytest.raises(ValueError, match="device must be one of") as info:
        xb.load(saved, device="tpu")
    assert "damaged" not in str(info.value)


class CreatesAFile:
    """Unpickling this opens (creates) a file: the classic pickle attack."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_payload_is_never_unpickled(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "model.exburn"
    path.write_bytes(pickle.dumps(CreatesAFile(target)))
    # the payload is live: plain pickle.loads would create the file
    with pytest.raises(ValueError) as info:
        xb.load(path)
    assert str(path) in str(info.value) and "pickle" in str(info.value)
    with pytest.raises(ValueError):
        xb.compile(mlp_spec()).load(path)
    with pytest.raises(ValueError):
        xb.deserialize_params(path.read_bytes())
    assert not target.exists()


def test_a_pickle_payload_inside_a_zip_is_never_unpickled(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "model.pt"
    torch.save({"weights": CreatesAFile(target)}, path)
    assert_unreadable(path)
    assert not target.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_a_torch_save_file_is_a_clear_error(tmp_path, zipfile):
    model = xb.compile(mlp_spec())
    path = tmp_path / "weights.pt"
    torch.save(model.module.state_dict(), path, _use_new_zipfile_serialization=zipfile)
    assert_unreadable(path)


def test_missing_file_and_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.exburn"):
        xb.load(tmp_path / "nope.exburn")
    with pytest.raises(ValueError, match="not a file"):
        xb.load(tmp_path)
    model = xb.compile(mlp_spec())
    with pytest.raises(ValueError, match="is a directory"):
        model.save(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        model.save(tmp_path / "missing" / "m.exburn")


def test_wrong_format_tag_is_refused():
    blob = persist.to_bytes({"w": torch.ones(2)}, {"format": "someone_else/9"})
    with pytest.raises(ValueError, match="unknown format"):
        persist.from_bytes(blob)


# ----------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("fail_at", ["os.replace", "os.fsync", "write"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch,
                                                                   fail_at):
    model = xb.compile(mlp_spec(), seed=0)
    path = tmp_path / "m.exburn"
    model.save(path)
    old = path.read_bytes()
    fit(model, classification_data(), epochs=1)

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    if fail_at == "write":
        real_open = open

        class HalfWriter:
            def __init__(self, f):
                self.f = f

            def write(self, blob):
                self.f.write(blob[: len(blob) // 2])
                raise OSError("disk full")

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        monkeypatch.setattr(persist, "open", lambda *a, **k: HalfWriter(real_open(*a, **k)),
                            raising=False)
    else:
        monkeypatch.setattr(persist.os, fail_at.split(".")[1], boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.exburn"]
    assert_state_equal(xb.load(path), snapshot(xb.compile(mlp_spec(), seed=0)))


def test_meta_round_trips_through_bytes():
    meta = {"kind": "demo", "nested": {"a": [1, 2.5, None, "x"]}, "flag": True}
    tensors, back = persist.from_bytes(persist.to_bytes({"w": torch.arange(6.0).view(2, 3)},
                                                        meta))
    assert {k: back[k] for k in meta} == meta
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3))


def test_a_flipped_bit_in_the_tensor_data_is_caught_by_the_checksum(tmp_path):
    model = trained_model()
    path = model.save(tmp_path / "m.exburn")
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01  # inside the last tensor's bytes, which safetensors cannot check
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum"):
        xb.load(path)


def test_a_failed_load_leaves_the_model_as_it_was(tmp_path):
    source = trained_model()
    path = source.save(tmp_path / "m.exburn")
    tensors, meta = persist.read_file(path)
    meta["optimizer_groups"][0]["params"] = [0]  # damaged: fewer params than the model has
    persist.write_file(tmp_path / "bad.exburn", tensors, meta)
    target = xb.compile(mlp_spec(), seed=5)
    before = snapshot(target)
    with pytest.raises(ValueError, match="bad.exburn"):
        target.load(tmp_path / "bad.exburn")
    assert_state_equal(target, before)
    assert target.history.empty


# ----------------------------------------------------------------- integrity of the metadata
def edit_header(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) once in the file's header, nothing else."""
    blob = path.read_bytes()
    end = 8 + int.from_bytes(blob[:8], "little")
    header = blob[8:end]
    assert header.count(old) == 1 and len(old) == len(new)
    path.write_bytes(blob[:8] + header.replace(old, new) + blob[end:])


@pytest.mark.parametrize("old, new", [
    (b"0.999", b"0.998"),                      # Adam's beta2
    (b'\\"frozen\\"', b'\\"frozex\\"'),        # would unfreeze the layer
    (b'\\"history\\"', b'\\"historx\\"'),      # would empty the history
], ids=["beta2", "frozen", "history"])
def test_a_one_byte_change_in_the_metadata_is_caught_by_the_checksum(saved, old, new):
    model = xb.load(saved)
    model.freeze(["hidden"])
    model.save(saved)
    edit_header(saved, old, new)
    with pytest.raises(ValueError, match="checksum") as info:
        xb.load(saved)
    assert str(saved) in str(info.value)
    target = xb.compile(model.spec, seed=3)
    before = snapshot(target)
    with pytest.raises(ValueError, match="checksum"):
        target.load(saved)
    assert_state_equal(target, before)
    assert target.frozen_layers == set() and target.history.empty


def test_the_file_is_plain_safetensors_with_a_versioned_format(saved):
    from safetensors import safe_open

    with safe_open(str(saved), "pt") as f:
        meta = f.metadata()
        names = list(f.keys())  # noqa: SIM118 - a safe_open handle, not a dict
    assert "param.hidden.weight" in names
    assert '"format": "exburn_nb/2"' in meta["exburn_nb"]


def test_an_older_or_unknown_format_is_refused_by_name(saved):
    edit_header(saved, b"exburn_nb/2", b"exburn_nb/1")
    with pytest.raises(ValueError, match="unknown format 'exburn_nb/1'.*exburn_nb/2"):
        xb.load(saved)


# ----------------------------------------------------------------- bad values, well signed
def full_state(model: xb.Model) -> dict:
    """Everything a load may change, copied."""
    opt = model.torch_optimizer.state_dict()
    return {
        "params": {k: v.clone() for k, v in model.module.state_dict().items()},
        "optimizer": {
            "state": {i: {k: v.clone() if isinstance(v, torch.Tensor) else v
                          for k, v in s.items()} for i, s in opt["state"].items()},
            "param_groups": [dict(g) for g in opt["param_groups"]]},
        "history": model.history.copy(), "batches": model.batch_history.copy(),
        "frozen": model.frozen_layers, "learning_rate": model.learning_rate,
        "weight_decay": model.weight_decay,
    }


def assert_unchanged(model: xb.Model, before: dict) -> None:
    after = full_state(model)
    assert after["params"].keys() == before["params"].keys()
    for k, v in before["params"].items():
        assert torch.equal(after["params"][k], v), k
    assert after["optimizer"]["param_groups"] == before["optimizer"]["param_groups"]
    assert after["optimizer"]["state"].keys() == before["optimizer"]["state"].keys()
    for i, state in before["optimizer"]["state"].items():
        assert after["optimizer"]["state"][i].keys() == state.keys()
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(after["optimizer"]["state"][i][k]),
                               torch.as_tensor(v)), (i, k)
    pd.testing.assert_frame_equal(after["history"], before["history"])
    pd.testing.assert_frame_equal(after["batches"], before["batches"])
    assert after["frozen"] == before["frozen"]
    assert (after["learning_rate"], after["weight_decay"]) == (before["learning_rate"],
                                                               before["weight_decay"])


def write_signed(path: Path, tensors: dict, meta_text: str) -> None:
    """Write a file with exactly this metadata text and a valid checksum over it, as an
    attacker (or a buggy writer) could: every byte is well signed, the values are bad."""
    from safetensors.torch import save as save_tensors

    payload = {k: v.contiguous() for k, v in tensors.items()}
    try:  # the checksum covers the parsed values (too deep to parse: refused before it)
        digest = persist._digest(json.dumps(json.loads(meta_text)), payload)
    except RecursionError:
        digest = "0" * 64
    signed = f'{meta_text.rstrip()[:-1]}, "sha256": "{digest}"}}'
    path.write_bytes(save_tensors(payload, metadata={"exburn_nb": signed}))


def set_group(**values):
    return lambda t, m: m["optimizer_groups"][0].update(values)


def set_row(index, **values):
    return lambda t, m: m["history"][index].update(values)


BAD_VALUES = {
    "lr abc": set_group(lr="abc"),
    "lr negative": set_group(lr=-1),
    "lr zero": set_group(lr=0),
    "lr huge": set_group(lr=1e999),  # JSON reads it as inf
    "betas above one": set_group(betas=[0.9, 1.5]),
    "betas one value": set_group(betas=[0.9]),
    "betas text": set_group(betas="0.9, 0.999"),
    "eps negative": set_group(eps=-1e-8),
    "amsgrad text": set_group(amsgrad="yes"),
    "weight decay negative": set_group(weight_decay=-0.1),
    "params ids text": set_group(params=["a", "b", "c", "d", "e", "f"]),
    "params ids repeated": set_group(params=[0, 0, 0, 0, 0, 0]),
    "two groups": lambda t, m: m["optimizer_groups"].append(dict(m["optimizer_groups"][0])),
    "exp_avg integer": lambda t, m: t.update({"optim.0.exp_avg": t["optim.0.exp_avg"].long()}),
    "exp_avg shape": lambda t, m: t.update({"optim.0.exp_avg": torch.zeros(3)}),
    "exp_avg missing": lambda t, m: t.pop("optim.0.exp_avg"),
    "step negative": lambda t, m: t.update({"optim.0.step": torch.tensor(-1.0)}),
    "step fractional": lambda t, m: t.update({"optim.0.step": torch.tensor(1.5)}),
    "step shape": lambda t, m: t.update({"optim.0.step": torch.ones(2)}),
    "state unknown key": lambda t, m: t.update({"optim.0.momentum_buffer": torch.zeros(8, 6)}),
    "state of no param": lambda t, m: t.update({"optim.9.step": torch.tensor(1.0)}),
    "state scalar text": lambda t, m: m["optimizer_scalars"].update({"0": {"step": "x"}}),
    "row without epoch": lambda t, m: m["history"][0].pop("epoch"),
    "loss text": set_row(0, loss="abc"),
    "loss list": set_row(0, loss=[1.0]),
    "epoch zero": set_row(0, epoch=0),
    "epoch float": set_row(0, epoch=1.5),
    "epochs out of order": set_row(1, epoch=1),
    "accuracy above one": set_row(0, accuracy=1.5),
    "extra column nested": set_row(0, note={"a": 1}),
    "row not a dict": lambda t, m: m["history"].append(3),
    "history not a list": lambda t, m: m.update(history={"epoch": 1}),
    "batch lengths": lambda t, m: t.update({"batch.loss": t["batch.loss"][:-1]}),
    "batch column missing": lambda t, m: t.pop("batch.lr"),
    "batch run negative": lambda t, m: t.update({"batch.run": -t["batch.run"] - 1}),
    "runs not ids": lambda t, m: m.update(runs=[{"run": "1", "config": {}}]),
    "batch epoch fractional": lambda t, m: t.update({"batch.epoch": t["batch.epoch"] + 0.5}),
    "batch column 2-d": lambda t, m: t.update({"batch.lr": t["batch.lr"][None]}),
    "frozen int": lambda t, m: m.update(frozen=[1]),
    "frozen text": lambda t, m: m.update(frozen="hidden"),
    "compile lr text": lambda t, m: m["compile"].update(learning_rate="abc"),
    "compile loss": lambda t, m: m["compile"].update(loss=3),
    "compile input shape": lambda t, m: m["compile"].update(input_shape=[None, -3]),
    "param integer": lambda t, m: t.update({"param.hidden.weight":
                                            t["param.hidden.weight"].long()}),
    "unknown tensor": lambda t, m: t.update({"weights": torch.zeros(1)}),
    "optim key no index": lambda t, m: t.update({"optim.-1.step": torch.tensor(1.0)}),
}


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """A trained Adam model's file: optimizer state, two epochs of history, a frozen layer."""
    model = trained_model("adam")
    model.freeze(["hidden"])
    fit(model, classification_data(seed=2), epochs=1, batch_size=16)  # adds a row, frozen
    return model.save(tmp_path_factory.mktemp("good") / "good.exburn")


@pytest.fixture(scope="module")
def target_file(tmp_path_factory):
    """Another trained Adam model (made once): what a failed load must leave alone."""
    model = trained_model("adam")
    model.freeze(["output"])
    return model.save(tmp_path_factory.mktemp("target") / "target.exburn")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_well_signed_file_with_bad_values_changes_nothing(good_file, target_file, tmp_path,
                                                            name):
    tensors, meta = persist.read_file(good_file)
    BAD_VALUES[name](tensors, meta)
    path = tmp_path / "bad.exburn"
    write_signed(path, tensors, json.dumps(meta))
    target = xb.load(target_file)
    assert target.torch_optimizer.state and target.epochs_trained == 2
    before = full_state(target)
    with pytest.raises(ValueError) as info:
        target.load(path)
    assert str(path) in str(info.value)
    assert_unchanged(target, before)
    with pytest.raises(ValueError) as info:
        xb.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_constants_are_refused(good_file, target_file, tmp_path, text):
    tensors, meta = persist.read_file(good_file)
    meta["optimizer_groups"][0]["lr"] = "@"
    path = tmp_path / "bad.exburn"
    write_signed(path, tensors, json.dumps(meta).replace('"@"', text))
    target = xb.load(target_file)
    before = full_state(target)
    with pytest.raises(ValueError, match="bad.exburn"):
        target.load(path)
    assert_unchanged(target, before)


def test_the_good_file_itself_loads(good_file, tmp_path):
    tensors, meta = persist.read_file(good_file)
    write_signed(tmp_path / "same.exburn", tensors, json.dumps(meta))
    again = xb.load(tmp_path / "same.exburn")
    assert again.frozen_layers == {"hidden"} and again.epochs_trained == 3


# ----------------------------------------------------------------- the layout and extra data
def test_save_returns_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = xb.compile(mlp_spec()).save("m.exburn")
    assert path.is_absolute() and path == (tmp_path / "m.exburn").resolve()


def test_extra_data_rides_along_under_the_same_checksum_and_loaders_ignore_it(tmp_path):
    model = trained_model()
    rng = torch.get_rng_state()
    meta = {"epoch": 3, "schedule": {"kind": "cosine", "position": [1, 2]}}
    path = model.save(tmp_path / "ckpt.exburn", extra=(meta, {"rng": rng}))
    back_meta, back_tensors = persist.read_extra(path)
    assert back_meta == meta and torch.equal(back_tensors["rng"], rng)
    again = xb.load(path)
    assert_state_equal(again, snapshot(model))
    assert "extra.rng" not in again.parameters()
    xb.compile(model.spec).load(path)
    assert persist.read_extra(model.save(tmp_path / "plain.exburn")) == ({}, {})
    edit_header(path, b'\\"position\\"', b'\\"pOsition\\"')
    with pytest.raises(ValueError, match="checksum"):
        persist.read_extra(path)


@pytest.mark.parametrize("extra", [{"a": 1}, ({"a": 1},), ({"a": 1}, {"t": [1.0]}),
                                   ({"a": object()}, {}), ({"a": float("nan")}, {}),
                                   ([1], {}), ({}, {1: torch.ones(1)})])
def test_bad_extra_is_refused_before_anything_is_written(tmp_path, extra):
    with pytest.raises(ValueError, match="extra"):
        xb.compile(mlp_spec()).save(tmp_path / "m.exburn", extra=extra)
    assert not os.listdir(tmp_path)


def test_persist_owns_the_layout_and_knows_no_models():
    import ast

    tree = ast.parse(Path(persist.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "model" not in imported and ".model" not in imported
    model = trained_model()
    tensors, meta = persist.model_payload(persist.ModelFile(
        params=model.module.state_dict(), compile={}, history=model.recorder.to_state()))
    assert {k.split(".")[0] for k in tensors} == {"param", "batch"}
    assert set(meta) >= {"spec", "compile", "frozen", "optimizer_groups", "history"}


# ----------------------------------------------------------------- resource bombs
def signed_copy(good: Path, path: Path, change) -> Path:
    tensors, meta = persist.read_file(good)
    change(tensors, meta)
    write_signed(path, tensors, json.dumps(meta))
    return path


@pytest.mark.parametrize("depth", [persist.MAX_NESTING + 1, 5_000, 200_000])
def test_deeply_nested_metadata_is_a_value_error(good_file, tmp_path, depth):
    tensors, meta = persist.read_file(good_file)
    meta["history"] = "@"
    path = tmp_path / "deep.exburn"
    write_signed(path, tensors, json.dumps(meta).replace('"@"', "[" * depth + "]" * depth))
    with pytest.raises(ValueError, match="deep") as info:
        xb.load(path)
    assert str(path) in str(info.value)


def test_a_deeply_nested_header_is_a_value_error(tmp_path):
    header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.exburn"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ValueError, match="deep.exburn"):
        xb.load(path)


def test_the_writer_refuses_metadata_it_could_not_read_back(tmp_path):
    nested: list = []
    for _ in range(persist.MAX_NESTING + 5):
        nested = [nested]
    with pytest.raises(ValueError, match="deep"):
        xb.compile(mlp_spec()).save(tmp_path / "m.exburn", extra=({"n": nested}, {}))
    assert not os.listdir(tmp_path)


def max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("units", [2**40, 2**26, 10**30], ids=["4 TB", "1.5 GB", "overflow"])
def test_a_file_declaring_a_huge_layer_fails_before_allocating_it(good_file, tmp_path, units):
    def huge(t, m):
        m["spec"]["layers"][0]["units"] = units
    path = signed_copy(good_file, tmp_path / "huge.exburn", huge)
    before = max_rss_mb()
    with pytest.raises(ValueError, match="huge.exburn") as info:
        xb.load(path)
    assert "declares" in str(info.value) or "cannot be built" in str(info.value)
    assert max_rss_mb() - before < 500  # the layer was never allocated


def test_a_file_declaring_too_many_layers_is_refused_by_count(good_file, tmp_path):
    def many(t, m):
        m["spec"]["layers"] += [{"kind": "dropout", "name": f"d{i}", "rate": 0.1}
                                for i in range(20_000)]
    path = signed_copy(good_file, tmp_path / "many.exburn", many)
    with pytest.raises(ValueError, match="MAX_LAYERS") as info:
        xb.load(path)
    assert str(path) in str(info.value) and "20,00" in str(info.value)


def test_the_header_size_is_capped(saved, monkeypatch):
    size = int.from_bytes(saved.read_bytes()[:8], "little")
    model = xb.load(saved)
    monkeypatch.setattr(persist, "MAX_HEADER_BYTES", size - 1)
    with pytest.raises(ValueError, match="MAX_HEADER_BYTES") as info:
        xb.load(saved)
    assert str(saved) in str(info.value)
    with pytest.raises(ValueError, match="MAX_HEADER_BYTES"):  # never written, then unreadable
        model.save(saved.parent / "again.exburn")
    assert not (saved.parent / "again.exburn").exists()


# ----------------------------------------------------------------- saving while training
def test_saving_while_a_background_run_trains_always_writes_a_loadable_file(tmp_path):
    from exburn_nb.train.runner import Runner

    spec = (xb.input("input", shape=(None, 32)).dense(2048, activation="relu", name="hidden")
            .batch_norm(name="bn").dense(4, name="output"))
    model = xb.compile(spec, optimizer="adam", seed=0)
    x, y = torch.randn(512, 32), torch.randint(0, 4, (512,))
    runner = Runner(model, (x, y), epochs=10_000, batch_size=8)
    runner.start()
    try:
        paths = [model.save(tmp_path / f"m{i}.exburn") for i in range(25)]
        assert runner.running  # the saves really overlapped training
    finally:
        runner.stop()
        runner.wait(30)
    for path in paths:
        loaded = xb.load(path)  # each passes its checksum
        assert loaded.history.empty or loaded.epochs_trained >= 1


# ----------------------------------------------------------------- temp files and permissions
WRITER = """
import sys
import exburn_nb as xb
model = xb.compile(xb.input("input", shape=(None, 1024)).dense(4096, name="big"))
while True:
    model.save(sys.argv[1])
"""


def test_a_writer_killed_mid_save_leaves_an_orphan_that_the_next_save_removes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "m.exburn"
    env = {**os.environ, "PYTHONPATH": str(Path(xb.__file__).parents[1])}
    orphans: list = []
    for _attempt in range(5):  # a kill can land just after a replace: then try again
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and not any(
                    p.suffix == ".tmp" for p in tmp_path.iterdir()):
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()  # reaped: its pid is no longer alive
        orphans = [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
        if orphans:
            break
    assert orphans, "the writer was never caught mid-save"
    assert all(str(proc.pid) in p.name for p in orphans)  # the writer's pid is in the name
    host = orphans[0].name.split(".")[3].split("-")[0]
    live = tmp_path / f".m.exburn.{host}-{os.getpid()}.abcd1234.tmp"  # a live writer's (ours)
    other = tmp_path / f".other.exburn.{host}-{proc.pid}.abcd1234.tmp"  # another file's
    remote = tmp_path / f".m.exburn.00000000-{proc.pid}.abcd1234.tmp"  # another host's
    for kept in (live, other, remote):
        kept.write_bytes(b"partial")
    xb.compile(mlp_spec()).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.exburn", live.name, other.name, remote.name])
    xb.load(path)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_saved_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = xb.compile(mlp_spec()).save(tmp_path / "m.exburn")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_save_load_save_is_bit_exact(tmp_path, optimizer):
    model = trained_model(optimizer)
    model.freeze(["bn"])
    first = model.save(tmp_path / "a.exburn").read_bytes()
    assert model.save(tmp_path / "b.exburn").read_bytes() == first  # deterministic
    assert xb.load(tmp_path / "a.exburn").save(tmp_path / "c.exburn").read_bytes() == first
    other = xb.compile(model.spec, optimizer=optimizer, seed=4)  # its settings follow the file
    assert other.load(tmp_path / "a.exburn").save(tmp_path / "d.exburn").read_bytes() == first


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"exburn_nb": "[1, 2]"},
                                      {"exburn_nb": "not json"}])
def test_a_foreign_safetensors_file_is_a_clear_error(tmp_path, metadata):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata=metadata)
    assert_unreadable(path)
    with pytest.raises(ValueError, match="exburn_nb|format|JSON"):
        xb.load(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_metadata_a_file_cannot_hold_is_a_clear_error_before_writing(tmp_path, value):
    model = trained_model()
    model.recorder.update_last_epoch({"note": value})
    with pytest.raises(ValueError, match="plain JSON data with finite numbers"):
        model.save(tmp_path / "m.exburn")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("header", [b'"' + b'\\"' * 200_000, b'["' + b'\\\\\\"' * 100_000,
                                    b'[' * 100 + b'"x",' * 100_000])
def test_hostile_strings_in_a_header_are_refused_in_linear_time(tmp_path, header):
    """Stripping strings before counting brackets once took quadratic time on these."""
    path = tmp_path / "strings.exburn"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ValueError, match="strings.exburn"):
        xb.load(path)
