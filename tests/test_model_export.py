"""``model.export``: ONNX read back by onnxruntime, ``.pt2`` by ``torch.export.load``, both
equal to ``model.predict``; the model is left exactly as it was; files are atomic."""

import os
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import exburn_nb as xb

ATOL = 1e-5  # float32 kernels of onnxruntime vs torch: measured at most ~1e-6 here
SUFFIXES = (".onnx", ".pt2")


def run_exported(path, x):
    """The exported file's output for ``x``, with the tool its users would use."""
    if str(path).endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: x.numpy()})[0]
    return torch.export.load(str(path)).module()(x).detach().numpy()


def snapshot(model):
    """Everything export must leave alone."""
    return {"state": {k: v.clone() for k, v in model.module.state_dict().items()},
            "training": [m.training for m in model.module.modules()],
            "grad": {n: p.requires_grad for n, p in model.module.named_parameters()},
            "frozen": model.frozen_layers, "device": model.device,
            "param_devices": {p.device for p in model.module.parameters()}}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after.pop("state").keys() == before["state"].keys()
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, before["state"][name]), name
    assert after == {k: v for k, v in before.items() if k != "state"}


def check_export(model, x, path):
    before = snapshot(model)
    written = model.export(path)
    assert written == path.resolve() and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert_unchanged(model, before)
    expected = model.predict(x).numpy()
    for batch in (x[:1], x):  # the batch dimension is dynamic
        got = run_exported(path, batch)
        np.testing.assert_allclose(got, expected[:len(batch)], rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def trained_mlp(digits):
    (x, y), _ = digits
    spec = (xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden")
            .dense(10, name="output"))
    model = xb.compile(spec, seed=0)
    return xb.fit(model, (x[:256], y[:256]), epochs=1, verbose=False, seed=0)


@pytest.fixture(scope="module")
def cnn(digits):
    """A CNN with batch norm and dropout, trained one epoch (so the running statistics
    are not the defaults) and left in training mode."""
    (x, y), _ = digits
    spec = (xb.input("image", shape=(None, 1, 8, 8)).conv2d(4, 3, activation="relu")
            .batch_norm().max_pool2d().dropout(0.4).flatten()
            .dense(16, activation="relu").batch_norm().dense(10, activation="softmax"))
    model = xb.compile(spec, seed=0)
    xb.fit(model, (x[:128].reshape(-1, 1, 8, 8), y[:128]), epochs=1, verbose=False, seed=0)
    model.train_mode()
    return model


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_the_digits_mlp_exports_and_reads_back_equal_to_predict(trained_mlp, digits, tmp_path,
                                                                suffix):
    (_, _), (tx, _) = digits
    check_export(trained_mlp, tx[:20], tmp_path / f"digits{suffix}")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_cnn_with_batch_norm_and_dropout_exports_as_it_predicts(cnn, digits, tmp_path,
                                                                 suffix):
    (_, _), (tx, _) = digits
    assert cnn.module.training
    check_export(cnn, tx[:20].reshape(-1, 1, 8, 8), tmp_path / f"cnn{suffix}")
    assert cnn.module.training  # back in training mode


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_model_built_from_a_plain_module_exports(tmp_path, suffix):
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(hidden=nn.Linear(5, 7), act=nn.Tanh(),
                                    drop=nn.Dropout(0.5), out=nn.Linear(7, 3)))
    model = xb.compile(net, input_shape=(None, 5))
    check_export(model, torch.randn(6, 5), tmp_path / f"module{suffix}")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_frozen_model_exports_the_same_and_stays_frozen(mlp, digits, tmp_path, suffix):
    (_, _), (tx, _) = digits
    model = mlp().freeze("hidden")
    model.train_mode()
    check_export(model, tx[:10], tmp_path / f"frozen{suffix}")
    assert model.is_frozen("hidden") and not model.layers["hidden"].training
    assert not any(p.requires_grad for p in model.layers["hidden"].parameters())
    unfrozen = mlp()
    check_export(unfrozen, tx[:10], tmp_path / f"unfrozen{suffix}")
    np.testing.assert_array_equal(run_exported(tmp_path / f"frozen{suffix}", tx[:10]),
                                  run_exported(tmp_path / f"unfrozen{suffix}", tx[:10]))


@pytest.mark.parametrize("name", ["model.exburn", "model", "model.ONNX.txt", "model.pt"])
def test_a_bad_suffix_names_the_path_and_the_suffixes(mlp, tmp_path, name):
    with pytest.raises(ValueError, match=r"\.onnx or \.pt2") as info:
        mlp().export(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_directory_a_missing_folder_or_a_non_path_is_refused(mlp, tmp_path):
    model = mlp()
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        model.export(tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="does not exist"):
        model.export(tmp_path / "missing" / "m.pt2")
    with pytest.raises(ValueError, match="path must be a file name"):
        model.export(42)


def test_a_module_without_input_shape_says_what_export_needs(tmp_path):
    model = xb.compile(nn.Sequential(OrderedDict(out=nn.Linear(3, 2))))
    with pytest.raises(ValueError, match="input_shape"):
        model.export(tmp_path / "m.onnx")


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_onnx_without_the_extra_says_which_extra_to_install(mlp, tmp_path, monkeypatch,
                                                            missing):
    model = mlp()
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as when not installed
    with pytest.raises(ImportError, match=r"pip install 'exburn_nb\[export\]'") as info:
        model.export(tmp_path / "m.onnx")
    assert repr(missing) in str(info.value)
    assert not list(tmp_path.iterdir())
    model.export(tmp_path / "m.pt2")  # .pt2 needs torch only
    assert (tmp_path / "m.pt2").is_file()


def test_a_failed_export_leaves_the_old_file_and_no_temp_file(mlp, tmp_path, monkeypatch):
    model = mlp()
    path = tmp_path / "m.pt2"
    path.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.export, "export", fail)
    before = snapshot(model)
    with pytest.raises(ValueError, match="could not export.*cannot trace this"):
        model.export(path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.pt2"]
    assert_unchanged(model, before)


def test_export_replaces_an_existing_file(mlp, digits, tmp_path):
    (_, _), (tx, _) = digits
    path = tmp_path / "m.pt2"
    path.write_bytes(b"old")
    check_export(mlp(), tx[:4], path)


def test_onnx_export_prints_nothing_and_leaves_logging_and_warnings_as_they_were(mlp, tmp_path,
                                                                               capfd):
    import logging
    import warnings

    model = mlp()
    model.export(tmp_path / "first.onnx")  # the exporter's imports set their own filters
    capfd.readouterr()
    logger = logging.getLogger("torch.onnx")
    level, filters = logger.level, list(warnings.filters)
    model.export(tmp_path / "m.onnx")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert logger.level == level and warnings.filters == filters
