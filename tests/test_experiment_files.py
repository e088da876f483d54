"""Experiment definition and files (issue 20): atomic saves, loads of edited directories,
param names that are columns, grid sizes, metric names, verbose=False.

Most tests build :class:`ExperimentResults` from plain runs (no training), so they run in
milliseconds; the few that make an ``Experiment`` use tiny data.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.experiment import ExperimentResults, Run
from exburn_nb.experiment.files import SETTING_KEYS, SETTINGS
from exburn_nb.experiment.params import MAX_GRID_RUNS
from exburn_nb.experiment.runs import RESERVED_PARAMS

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

X, Y = torch.randn(24, 4, generator=torch.Generator().manual_seed(0)), torch.arange(24) % 2


def spec() -> xb.Spec:
    return xb.input("input", shape=(None, 4)).dense(2, name="output")


def results(n_runs: int = 3, epochs: int = 3, offset: float = 0.0, model: bool = True,
            params: dict | None = None) -> ExperimentResults:
    """Results of ``n_runs`` runs without training: run 1 is the best (when there are
    two); the last run failed before its first epoch."""
    params = params or {"learning_rate": [0.1, 0.01, 0.001], "units": [4, 8]}
    runs = []
    for k in range(n_runs):
        values = {name: (c[k % len(c)] if isinstance(c, list) else c.low)
                  for name, c in params.items()}
        if k == n_runs - 1 and n_runs > 2:
            runs.append(Run(k, values, 100 + k, "failed", "RuntimeError: boom", 0.5))
            continue
        rows = [{"epoch": e, "loss": 1.0 / e + k % 2 * -0.1 + offset,
                 "val_loss": 2.0 / e - k * 0.01 + offset, "lr": 0.01, "seconds": 0.25,
                 "samples_per_s": 96.0} for e in range(1, epochs + 1)]
        runs.append(Run(k, values, 100 + k, "finished", "", 1.5 + k, rows=rows))
    out = ExperimentResults(params, "val_loss", runs=runs,
                            settings={"search": "grid", "seed": 0})
    if model and out.best_run is not None:
        out = ExperimentResults(params, "val_loss", runs=runs, settings=out.settings,
                                models={out.best_run: xb.compile(spec(), seed=1)})
    return out


def assert_same(a: ExperimentResults, b: ExperimentResults) -> None:
    pd.testing.assert_frame_equal(a.runs, b.runs, check_dtype=False)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_dtype=False)
    assert (a.params, a.metric, a.direction, a.best_run) == \
        (b.params, b.metric, b.direction, b.best_run)
    assert {k: a.settings.get(k) for k in SETTING_KEYS} == \
        {k: b.settings.get(k) for k in SETTING_KEYS}
    assert (a.best_model is None) == (b.best_model is None)
    if a.best_model is not None:
        assert torch.equal(a.best_model.parameters()["output.weight"],
                           b.best_model.parameters()["output.weight"])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------ atomic saves (#2)
def _half_then_enospc(write, path_of):
    """A writer that writes half of what it was asked to, then fails as a full disk."""
    @functools.wraps(write)
    def failing(*args, **kwargs):
        write(*args, **kwargs)
        path = Path(path_of(*args))
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected)")
    return failing


@pytest.mark.parametrize("writer", ["runs table", "best model", "manifest"])
def test_a_save_that_fails_half_way_leaves_the_previous_save_as_it_was(
        tmp_path, monkeypatch, writer):
    first = results()
    first.save(tmp_path)
    before = snapshot(tmp_path)
    owner, name, path_of = {"runs table": (pd.DataFrame, "to_csv", lambda f, p, *a: p),
                            "best model": (xb.Model, "save", lambda m, p, *a: p),
                            "manifest": (Path, "write_text", lambda p, *a: p)}[writer]
    monkeypatch.setattr(owner, name, _half_then_enospc(getattr(owner, name), path_of))
    with pytest.raises(OSError, match="No space left"):
        results(n_runs=5, epochs=4, offset=1.0).save(tmp_path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # nothing changed, no temporary file left
    assert_same(xb.Experiment.load(tmp_path), first)


def test_a_saver_killed_mid_save_leaves_an_orphan_that_the_next_save_removes(tmp_path):
    first = results()
    first.save(tmp_path)
    before = snapshot(tmp_path)
    # a process that dies with its runs table written aside, before anything is replaced
    subprocess.run([sys.executable, "-c", "import sys; from exburn_nb.io import persist; "
                    "persist.temp_beside(sys.argv[1]).write_text('half')",
                    str(tmp_path / "runs.csv")], check=True)
    orphans = set(snapshot(tmp_path)) - set(before)
    assert len(orphans) == 1 and next(iter(orphans)).startswith(".runs.csv.")
    assert_same(xb.Experiment.load(tmp_path), first)  # the orphan is ignored
    first.save(tmp_path)
    assert set(snapshot(tmp_path)) == set(before)  # and removed by the next save


@pytest.fixture
def small_tmpfs():
    """A 160 KiB tmpfs (mounting needs root; skipped, with the reason, where not allowed)."""
    mount = Path(tempfile.mkdtemp(prefix="exburn-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"SKIPPED the real disk-full test: cannot mount a tmpfs here "
                    f"({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


def test_a_save_on_a_full_disk_raises_and_the_previous_save_stays_loadable(small_tmpfs):
    directory = small_tmpfs / "exp"
    first = results()
    first.save(directory)
    before = snapshot(directory)
    big = results(n_runs=400, epochs=10, offset=1.0)  # a runs table of ~400 KB
    with pytest.raises(OSError) as error:
        big.save(directory)
    assert error.value.errno == errno.ENOSPC
    assert snapshot(directory) == before  # the half-written files are gone
    assert_same(xb.Experiment.load(directory), first)
    results(n_runs=4, offset=2.0).save(directory)  # the space came back: a save fits
    assert_same(xb.Experiment.load(directory), results(n_runs=4, offset=2.0))


def test_a_directory_mixing_two_saves_is_refused_by_name(tmp_path):
    results().save(tmp_path / "a")
    results(n_runs=5, offset=1.0).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "runs.csv", tmp_path / "a" / "runs.csv")
    with pytest.raises(ValueError, match=r"a: runs\.csv is not the file experiment\.json"):
        xb.Experiment.load(tmp_path / "a")


def test_a_save_without_a_model_does_not_keep_the_previous_saves_model(tmp_path):
    results().save(tmp_path)
    second = results(n_runs=4, offset=1.0, model=False)  # its best run's model not kept
    second.save(tmp_path)
    assert not (tmp_path / "best_model.exburn").exists()
    again = xb.Experiment.load(tmp_path)
    assert again.best_run == second.best_run and again.best_model is None


# ------------------------------------------------------------------ param names (#4)
@given(name=st.sampled_from(RESERVED_PARAMS))
@settings(max_examples=len(RESERVED_PARAMS) * 2, deadline=None)
def test_a_param_named_like_a_results_column_is_refused_naming_it(name):
    for make in (lambda: xb.Experiment(lambda p: spec() if p[name] else spec(), (X, Y),
                                       params={name: [1, 2]}, metric="loss", epochs=1),
                 lambda: ExperimentResults({name: [1, 2]}, "loss")):
        with pytest.raises(ValueError, match=f"params: '{name}' is a column"):
            make()


def test_the_columns_the_issue_names_are_reserved():
    assert {"epoch", "run", "val_loss", "lr", "seconds", "state", "seed", "message",
            "accuracy", "samples_per_s", "best_epoch", "final_loss"} <= set(RESERVED_PARAMS)
    assert not {"epochs", "learning_rate", "model", "step", "batch"} & set(RESERVED_PARAMS)


names = (st.text(min_size=0, max_size=12) | st.sampled_from(
    ["model", "step", "batch", "epochs", "stop_training", "Loss", "run "])).filter(
    lambda n: n not in RESERVED_PARAMS)


@given(name=names, other=names)
@settings(max_examples=40, deadline=None)
def test_any_other_param_name_round_trips_exactly(name, other):
    params = {name: [1, 2], **({other: ["a", "b, c"]} if other != name else {})}
    saved = results(params=params, model=False)
    directory = Path(tempfile.mkdtemp(prefix="exburn-names-"))
    try:
        saved.save(directory)
        again = xb.Experiment.load(directory)
        assert_same(again, saved)
        for run, history in saved.histories.items():
            pd.testing.assert_frame_equal(again.histories[run], history, check_dtype=False)
    finally:
        shutil.rmtree(directory)


# ------------------------------------------------------------------ grids (#9)
def build_all(params):
    return spec() if sum(1 for _ in params) else None  # reads every name


@pytest.mark.parametrize("params, size", [
    ({"batch_size": xb.space.integers(1, 10**12)}, 10**12),
    ({f"p{i}": [1, 2, 3, 4] for i in range(10)}, 4**10),
    ({"batch_size": xb.space.integers(1, MAX_GRID_RUNS), "learning_rate": [0.1, 0.2]},
     2 * MAX_GRID_RUNS),
])
def test_a_grid_past_the_limit_is_refused_naming_its_size_before_it_is_built(params, size):
    with pytest.raises(ValueError, match=f"the grid has {size} runs .* more than "
                                         f"MAX_GRID_RUNS={MAX_GRID_RUNS}"):
        xb.Experiment(build_all, (X, Y), params=params, metric="loss", epochs=1)


def test_a_grid_at_the_limit_is_made_and_a_large_range_is_counted_not_listed():
    exp = xb.Experiment(spec(), (X, Y), params={"batch_size": xb.space.integers(
        1, MAX_GRID_RUNS)}, metric="loss", epochs=1)
    assert exp.total == MAX_GRID_RUNS
    assert exp.space.grid_size() == MAX_GRID_RUNS
    random = xb.Experiment(spec(), (X, Y), params={"batch_size": xb.space.integers(
        1, 10**12)}, metric="loss", epochs=1, search="random", n_trials=2)
    assert random.space.grid_size() == 10**12 and random.total == 2


# ------------------------------------------------------------------ metric (#14)
@pytest.mark.parametrize("metric, hint", [("val_los", "did you mean 'val_loss'"),
                                          ("Loss", "did you mean 'loss'"), (3, "got 3")])
def test_a_metric_that_no_run_computes_is_refused_with_a_did_you_mean(metric, hint):
    with pytest.raises(ValueError, match=f"metric must be one of loss, val_loss, lr; .*{hint}"):
        xb.Experiment(spec(), (X, Y), validation_data=(X, Y), params={"batch_size": [8]},
                      metric=metric, epochs=1)


# ------------------------------------------------------------------ compile options (#15)
@pytest.mark.parametrize("name, value", [
    ("learning_rate", -1), ("learning_rate", 0), ("learning_rate", float("nan")),
    ("learning_rate", "fast"), ("loss", "nope"), ("device", "tpu"), ("optimizer", "adamm"),
    ("weight_decay", -0.5)])
@pytest.mark.parametrize("build", ["spec", "function", "model"])
def test_a_bad_compile_option_param_is_refused_before_any_run(name, value, build):
    builder = {"spec": spec(), "function": lambda p: spec(),
               "model": xb.compile(spec(), seed=0)}[build]
    for params in ({name: [value]}, {name: [*([0.01] if name == "learning_rate" else []),
                                            value, *([0.02] if name == "learning_rate" else [])],
                                     "batch_size": [4, 8]}):
        with pytest.raises(ValueError, match=f"{name}"):
            xb.Experiment(builder, (X, Y), params=params, metric="loss", epochs=1)


# ------------------------------------------------------------------ loading (#16)
@functools.cache
def saved_directory() -> Path:
    """One good save for the whole session (hypothesis tests can't take tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="exburn-load-fuzz-")) / "good"
    results(params={"learning_rate": [0.1, 0.01, 0.001],
                    "units": xb.space.integers(2, 6)}).save(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _remove_saved_directory():
    yield
    if saved_directory.cache_info().currsize:
        shutil.rmtree(saved_directory().parent, ignore_errors=True)


def fresh_copy() -> Path:
    path = saved_directory().parent / uuid.uuid4().hex
    shutil.copytree(saved_directory(), path)
    return path


def edit_manifest(directory: Path, edit) -> dict:
    manifest = json.loads((directory / SETTINGS).read_text())
    edit(manifest)
    (directory / SETTINGS).write_text(json.dumps(manifest))
    return manifest


@pytest.mark.parametrize("field, edit, match", [
    ("runs_file", lambda m: m.update(runs_file="/etc/hostname"), "'runs_file'"),
    ("runs_file", lambda m: m.update(runs_file="../../x"), "'runs_file'"),
    ("direction", lambda m: m.update(direction="sideways"), "'direction'.*sideways"),
    ("seed", lambda m: m.update(seed=float("inf")), "'seed'"),
    ("params", lambda m: m["params"]["units"].update(kind="bogus"), "'params'.*bogus"),
    ("runs", lambda m: m["runs"][0].pop("seed"), "'runs'"),
    ("runs", lambda m: m["runs"][0].update(state="sideways"), "'runs'.*sideways"),
    ("metric", lambda m: m.update(metric="val_los"), "'metric'.*did you mean 'val_loss'"),
    ("best_run", lambda m: m.update(best_run=0), "'best_run' is 0, but"),
    ("files", lambda m: m.pop("files"), "'files' is missing"),
    ("format_version", lambda m: m.update(format_version=7), "'format_version'"),
    ("runs", lambda m: m.update(runs={"a": 1}), "'runs'"),
])
def test_an_edited_manifest_is_refused_naming_the_directory_and_field(field, edit, match):
    directory = fresh_copy()
    edit_manifest(directory, edit)
    with pytest.raises(ValueError, match=match) as error:
        xb.Experiment.load(directory)
    assert str(directory) in str(error.value)


@pytest.mark.parametrize("text", ["{", "[]", "[" * 100_000, "\xff"])
def test_a_manifest_that_is_not_a_json_object_is_refused(text):
    directory = fresh_copy()
    (directory / SETTINGS).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=str(directory)):
        xb.Experiment.load(directory)


def test_files_are_read_only_inside_the_directory_never_through_a_link(tmp_path):
    directory = fresh_copy()
    outside = tmp_path / "runs.csv"
    shutil.move(directory / "runs.csv", outside)  # the very file, same checksum
    (directory / "runs.csv").symlink_to(outside)
    with pytest.raises(ValueError, match=r"runs\.csv is missing or not a plain file"):
        xb.Experiment.load(directory)


@pytest.mark.parametrize("text", [
    "", "run,learning_rate\n0,1\n", "a,b\n\"x\n", "run,learning_rate,units,epoch,loss,state\n",
    "run,learning_rate,units,epoch,loss,state\n0,0.1,2,1,abc,finished\n",
    "run,learning_rate,units,epoch,loss,state\n0,0.1,2,0.5,1,finished\n",
    "run,learning_rate,units,epoch,loss,state\n9,0.1,2,1,1,finished\n",
    "run,learning_rate,units,epoch,loss,state\n0,0.1,2,1,1,failed\n"])
def test_an_edited_runs_table_with_its_checksum_updated_is_checked_too(text):
    directory = fresh_copy()
    (directory / "runs.csv").write_text(text)
    import hashlib
    edit_manifest(directory, lambda m: m["files"].update(
        {"runs.csv": hashlib.sha256(text.encode()).hexdigest()}))
    with pytest.raises(ValueError, match=str(directory)):
        xb.Experiment.load(directory)


def json_values():
    scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
               | st.sampled_from(["runs.csv", "/etc/hostname", "../../x", "val_loss",
                                  "finished", "grid", "integers", "bogus", "minimize"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def paths(value, prefix=()):
    """Every path to a value inside the manifest."""
    yield prefix
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, inner in items:
        yield from paths(inner, (*prefix, key))


def same(a, b) -> bool:
    """JSON values equal (NaN equals NaN, 3 equals 3.0, True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@given(data=st.data())
@FUZZ
def test_any_edit_of_the_manifest_loads_exactly_what_it_says_or_is_a_value_error(data):
    directory = fresh_copy()
    original = json.loads((directory / SETTINGS).read_text())
    path = data.draw(st.sampled_from([p for p in paths(original) if p]))
    delete = data.draw(st.booleans())
    value = None if delete else data.draw(json_values())

    def edit(manifest):
        *head, last = path
        parent = functools.reduce(lambda v, k: v[k], head, manifest)
        if delete:
            del parent[last]
        else:
            parent[last] = value
    edited = edit_manifest(directory, edit)
    try:
        again = xb.Experiment.load(directory)
    except ValueError as error:
        assert str(directory) in str(error)
        return
    resaved = directory.parent / (directory.name + "-resaved")
    again.save(resaved)
    back = json.loads((resaved / SETTINGS).read_text())
    for key in set(back) & set(edited) - {"files", "format_version"}:  # (a deleted optional
        assert same(back[key], edited[key]), key  # field loads as its default)


@given(data=st.data())
@FUZZ
def test_any_edit_of_the_runs_table_or_model_file_is_refused(data):
    directory = fresh_copy()
    name = data.draw(st.sampled_from(["runs.csv", "best_model.exburn"]))
    blob = (directory / name).read_bytes()
    start = data.draw(st.integers(0, len(blob)))
    end = data.draw(st.integers(start, min(len(blob), start + 64)))
    edited = blob[:start] + data.draw(st.binary(max_size=16)) + blob[end:]
    (directory / name).write_bytes(edited)
    if edited == blob:
        assert_same(xb.Experiment.load(directory), xb.Experiment.load(saved_directory()))
        return
    with pytest.raises(ValueError, match=f"{directory}: {name} is not the file"):
        xb.Experiment.load(directory)


# ------------------------------------------------------------------ verbose
def test_verbose_false_is_accepted_and_quiets_the_progress_bar(capsys):
    exp = xb.Experiment(spec(), (X, Y), params={"learning_rate": [0.1]}, metric="loss",
                        epochs=1, batch_size=8, verbose=False)
    exp.run()
    assert exp.summary.state.tolist() == ["finished"]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    exp.replace(verbose=True).run()
    assert "runs" in capsys.readouterr().err  # the progress bar over runs
    with pytest.raises(ValueError, match="verbose must be True or False; got 'no'"):
        xb.Experiment(spec(), (X, Y), params={"learning_rate": [0.1]}, metric="loss",
                      verbose="no")


def test_a_save_while_the_experiment_trains_loads(tmp_path):
    exp = xb.Experiment(spec(), (X, Y), params={"learning_rate": [0.1, 0.01, 0.001]},
                        metric="loss", epochs=40, batch_size=4, verbose=False)
    trained = threading.Event()
    exp.add_listener(lambda event, e: event == "epoch" and trained.set())
    exp.start()
    try:
        assert trained.wait(60)
        for k in range(8):  # runs start, record epochs and end between the saves
            exp.save(tmp_path / str(k))
            loaded = xb.Experiment.load(tmp_path / str(k))
            assert len(loaded.runs) >= 1 and set(loaded.summary.state) <= {"running", "finished"}
    finally:
        exp.stop()
        assert exp.wait(60)
