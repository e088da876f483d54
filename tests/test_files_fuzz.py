"""Fuzzing the loaders (``xb.load``, ``Model.load``, ``xb.deserialize_params``).

The contract, for any bytes at all: either a clean model equal to what was saved (or, for
a well-signed file with other valid values, a model that trains), or a ``ValueError``
naming the file (``FileNotFoundError`` for a missing path) — never another exception,
never a half-applied load, never code executed. Bounded to run in a few seconds.
"""

from __future__ import annotations

import atexit
import functools
import json
import pickle
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_persist import assert_unchanged, full_state, write_signed
from torch_reference import classification_data, fit

import exburn_nb as xb
from exburn_nb.io import persist

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def spec() -> xb.Spec:
    return (xb.input("input", shape=(None, 6)).dense(8, activation="tanh", name="hidden")
            .batch_norm(name="bn").dropout(rate=0.1).dense(3, name="output"))


@functools.cache
def folder() -> Path:
    """One folder for the whole session (hypothesis tests can't take function fixtures)."""
    path = Path(tempfile.mkdtemp(prefix="exburn-fuzz-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def good_blob() -> bytes:
    """A saved model with everything: Adam state, history rows and batches, a frozen layer."""
    model = xb.compile(spec(), learning_rate=0.01, seed=0)
    fit(model, classification_data(n=32), epochs=2, batch_size=16, accuracy=True)
    model.freeze(["hidden"])
    return model.save(folder() / "good.exburn").read_bytes()


@functools.cache
def target_blob() -> bytes:
    """Another trained model of the same spec: what a failed ``Model.load`` must keep."""
    model = xb.compile(spec(), learning_rate=0.02, seed=1)
    fit(model, classification_data(n=32, seed=3), epochs=1, batch_size=8)
    model.freeze(["output"])
    return model.save(folder() / "target.exburn").read_bytes()


@functools.cache
def reference() -> dict:
    (folder() / "good.exburn").write_bytes(good_blob())
    return full_state(xb.load(folder() / "good.exburn"))


def fresh_target() -> xb.Model:
    path = folder() / "target.exburn"
    path.write_bytes(target_blob())
    return xb.load(path)


def assert_equal_to_saved(model: xb.Model) -> None:
    assert_unchanged(model, reference())


def check_file(path: Path, *, exact: bool = True) -> bool:
    """The contract for one file; True when it loaded. ``exact``: the content must be the
    good file's (byte damage); otherwise any accepted file must give a model that trains."""
    try:
        model = xb.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        loaded = False
    else:
        loaded = True
        if exact:
            assert_equal_to_saved(model)
        else:
            fit(model, classification_data(n=8), epochs=1, batch_size=4)
    target = fresh_target()
    before = full_state(target)
    try:
        target.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        assert_unchanged(target, before)
    else:
        if exact:
            assert_equal_to_saved(target)
        else:
            fit(target, classification_data(n=8), epochs=1, batch_size=4)
    return loaded


def layout(blob: bytes) -> list[int]:
    """Every region boundary: the length prefix, the header, each tensor's bytes."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    cuts = {0, 1, 7, 8, 9, 8 + size - 1, 8 + size, len(blob) - 1}
    for key, entry in header.items():
        if key != "__metadata__":
            start, end = entry["data_offsets"]
            cuts |= {8 + size + start, 8 + size + end - 1}
    return sorted(c for c in cuts if 0 <= c < len(blob))


# ----------------------------------------------------------------- byte damage
def test_truncation_at_every_region_boundary(tmp_path):
    blob = good_blob()
    cuts = layout(blob)
    assert len(cuts) > 20  # every tensor's start and end
    path = tmp_path / "cut.exburn"
    for cut in cuts:
        path.write_bytes(blob[:cut])
        assert not check_file(path), cut


@FUZZ
@given(cut=st.integers(0, 10**9))
def test_truncation_anywhere(tmp_path, cut):
    blob = good_blob()
    path = tmp_path / "cut.exburn"
    path.write_bytes(blob[:cut % len(blob)])
    assert not check_file(path)


@FUZZ
@given(data=st.data())
def test_random_bit_flips(tmp_path, data):
    blob = bytearray(good_blob())
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.one_of(st.integers(0, 7), st.integers(8, header_end - 1),
                                    st.integers(header_end, len(blob) - 1)))
        blob[index] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path / "flip.exburn"
    path.write_bytes(bytes(blob))
    check_file(path)


@FUZZ
@given(junk=st.binary(min_size=1, max_size=64))
def test_bytes_appended_or_prepended(tmp_path, junk):
    path = tmp_path / "junk.exburn"
    path.write_bytes(good_blob() + junk)
    check_file(path)
    path.write_bytes(junk + good_blob())
    assert not check_file(path)


def test_a_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.exburn"):
        xb.load(tmp_path / "gone.exburn")
    with pytest.raises(FileNotFoundError, match="gone.exburn"):
        fresh_target().load(tmp_path / "gone.exburn")


# ----------------------------------------------------------------- well-signed bad values
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)


def meta_paths(value, prefix=()):
    """Every path to a value inside the metadata."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from meta_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from meta_paths(v, (*prefix, i))


@functools.cache
def good_contents() -> tuple[dict, dict, list]:
    path = folder() / "good.exburn"
    path.write_bytes(good_blob())
    tensors, meta = persist.read_file(path)
    meta.pop("format")
    return tensors, meta, [p for p in meta_paths(meta) if p]


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_value_anywhere_in_the_metadata(tmp_path_factory, data):
    tensors, meta, paths = good_contents()
    meta = json.loads(json.dumps(meta))
    where = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    node = meta
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path_factory.mktemp("crafted") / "crafted.exburn"
    write_signed(path, tensors, json.dumps({"format": persist.FORMAT, **meta}))
    check_file(path, exact=False)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_tensors_of_any_shape_and_dtype(tmp_path_factory, data):
    tensors, meta, _ = good_contents()
    tensors = dict(tensors)
    name = data.draw(st.sampled_from(sorted(tensors)))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8,
                                       torch.bool, torch.float16]))
    shape = data.draw(st.lists(st.integers(0, 4), max_size=3))
    if data.draw(st.booleans()):
        tensors[name] = torch.zeros(shape, dtype=dtype)
    else:
        del tensors[name]
    path = tmp_path_factory.mktemp("tensors") / "tensors.exburn"
    write_signed(path, tensors, json.dumps({"format": persist.FORMAT, **meta}))
    check_file(path, exact=False)


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 3000), where=st.sampled_from(["history", "spec", "extra"]))
def test_nesting_at_any_depth(tmp_path_factory, depth, where):
    tensors, meta, _ = good_contents()
    meta = json.loads(json.dumps(meta))
    meta[where] = "@"
    text = json.dumps({"format": persist.FORMAT, **meta}).replace('"@"',
                                                                  "[" * depth + "]" * depth)
    path = tmp_path_factory.mktemp("deep") / "deep.exburn"
    write_signed(path, tensors, text)
    check_file(path, exact=False)


@settings(max_examples=25, deadline=None)
@given(units=st.integers(1, 2**80), layer=st.sampled_from([0, 3]),
       n_in=st.integers(1, 2**40))
def test_declared_sizes(tmp_path_factory, units, layer, n_in):
    tensors, meta, _ = good_contents()
    meta = json.loads(json.dumps(meta))
    meta["spec"]["layers"][layer]["units"] = units
    meta["spec"]["input"]["shape"] = [None, n_in]
    path = tmp_path_factory.mktemp("sizes") / "sizes.exburn"
    write_signed(path, tensors, json.dumps({"format": persist.FORMAT, **meta}))
    check_file(path, exact=False)


def test_a_spec_of_20000_layers(tmp_path):
    tensors, meta, _ = good_contents()
    meta = json.loads(json.dumps(meta))
    meta["spec"]["layers"] = [{"kind": "dense", "name": f"d{i}", "units": 3, "activation": None}
                              for i in range(20_000)]
    path = tmp_path / "long.exburn"
    write_signed(path, tensors, json.dumps({"format": persist.FORMAT, **meta}))
    with pytest.raises(ValueError, match="MAX_LAYERS"):
        xb.load(path)
    assert not check_file(path, exact=False)


# ----------------------------------------------------------------- parameter bytes
@functools.cache
def params_blob() -> bytes:
    return xb.compile(spec(), seed=0).serialize_params()


@FUZZ
@given(data=st.data())
def test_deserialize_params_under_damage(data):
    blob = bytearray(params_blob())
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 3))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    try:
        params = xb.deserialize_params(bytes(blob))
    except ValueError as exc:
        assert "params bytes" in str(exc)
    else:
        original = xb.deserialize_params(params_blob())
        assert params.keys() == original.keys()
        assert all(torch.equal(params[k], original[k]) for k in params)


def test_deserialize_params_refuses_a_model_file():
    with pytest.raises(ValueError, match="params bytes.*xb.load"):
        xb.deserialize_params(good_blob())


# ----------------------------------------------------------------- code never runs
class CreatesAFile:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.filterwarnings("ignore")
def test_pickle_payloads_anywhere_never_run(tmp_path):
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps(CreatesAFile(target))
    tensors, meta, _ = good_contents()
    path = tmp_path / "m.exburn"
    cases = [payload, good_blob() + payload, payload + good_blob(),
             good_blob()[:8] + payload + good_blob()[8 + len(payload):]]
    for blob in cases:
        path.write_bytes(blob)
        check_file(path)
        with pytest.raises(ValueError):
            xb.deserialize_params(blob)
    as_tensor = {**tensors, "extra.p": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    write_signed(path, as_tensor, json.dumps({"format": persist.FORMAT, **meta,
                                              "extra": {"p": payload.decode("latin-1")}}))
    assert persist.read_extra(path)[0]["p"] == payload.decode("latin-1")  # stored as data
    xb.load(path)
    torch.save({"weights": CreatesAFile(target)}, path)
    check_file(path)
    assert not target.exists()


def test_history_frames_survive_the_fuzz_fixtures():
    """The reference the fuzz compares against is a real, non-trivial model."""
    ref = reference()
    assert len(ref["history"]) == 2 and len(ref["batches"]) == 4
    assert ref["frozen"] == {"hidden"} and ref["optimizer"]["state"]
    assert isinstance(ref["history"], pd.DataFrame)


@pytest.mark.parametrize("key", ["amsgrad", "maximize"])
def test_an_optimizer_setting_the_kit_fixes_is_refused(tmp_path, key):
    """Found by the metadata fuzz: amsgrad turned on in a file loaded, then the first step
    failed inside torch (its state has no max_exp_avg_sq); it is refused at load."""
    tensors, meta, _ = good_contents()
    meta = json.loads(json.dumps(meta))
    meta["optimizer_groups"][0][key] = True
    path = tmp_path / "switched.exburn"
    write_signed(path, tensors, json.dumps({"format": persist.FORMAT, **meta}))
    with pytest.raises(ValueError, match=rf"optimizer group 0 '{key}' must be False.*got True"):
        xb.load(path)
    assert not check_file(path, exact=False)
