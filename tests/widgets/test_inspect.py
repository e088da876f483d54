"""xb.widgets.inspect in-process: the numbers it shows against direct computations."""

import numpy as np
import pytest
import torch

import exburn_nb as xb

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), (tx, ty) = digits
    spec = (xb.input("input", shape=(None, 64)).dense(16, activation="relu", name="hidden")
            .dense(10, name="output"))
    model = xb.compile(spec, seed=0)
    xb.fit(model, (x, y), epochs=1, seed=0, verbose=False)
    return model, tx, ty


def test_classifier_view_digits(trained):
    model, tx, ty = trained
    view = xb.widgets.inspect(model, (tx, ty), k=6)
    pred = model.predict(tx).argmax(dim=1).numpy()
    assert np.array_equal(view.confusion, sklearn_metrics.confusion_matrix(ty.numpy(), pred))
    heat = view.figures[0].data[0]
    assert np.array_equal(np.asarray(heat.z), view.confusion)
    assert np.allclose(view.scores["recall"], sklearn_metrics.recall_score(ty, pred, average=None))
    assert len(view.wrong) == 6 and (view.wrong["true"] != view.wrong["predicted"]).all()
    images = view.figures[1]  # 8x8 digits drawn as images
    assert len(images.data) == 6
    first = int(view.wrong["index"].iloc[0])
    assert np.allclose(np.asarray(images.data[0].z), tx[first].reshape(8, 8).numpy())
    assert view.predictions is None


def test_classifier_view_without_images_shows_a_table():
    (x, y), _ = xb.datasets.blobs(n=120, classes=3, noise=0.6)
    model = xb.compile(xb.input("input", shape=(None, 2)).dense(3, name="out"), seed=0)
    view = xb.widgets.inspect(model, (x, y), k=3)
    assert len(view.figures) == 1 and view.confusion.shape == (3, 3)
    assert "most confidently wrong" in view.children[-1].value


def test_regression_view(digits):
    (x, y), (tx, ty) = xb.datasets.diabetes()
    model = xb.compile(xb.input("input", shape=(None, 10)).dense(1, name="out"), loss="mse", seed=0)
    view = xb.widgets.inspect(model, (tx, ty))
    pred = model.predict(tx).ravel().numpy()
    assert view.confusion is None
    assert np.allclose(view.predictions, pred) and np.allclose(view.residuals, ty.ravel().numpy() - pred)
    assert np.allclose(np.asarray(view.figures[0].data[0].y), pred)
    assert np.allclose(np.asarray(view.figures[1].data[0].y), view.residuals)


def test_bad_arguments(trained):
    model, tx, ty = trained
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        xb.widgets.inspect(model, (tx, ty), k=0)
    with pytest.raises(ValueError, match="data"):
        xb.widgets.inspect(model, (torch.zeros(3, 5), ty[:3]))


def test_image_inputs_are_drawn_as_images():
    (x, y), (tx, ty) = xb.datasets.digits(images=True)
    spec = xb.input("input", shape=(None, 1, 8, 8)).flatten(name="flat").dense(10, name="out")
    model = xb.compile(spec, seed=0)
    view = xb.widgets.inspect(model, (tx, ty), k=4)
    first = int(view.wrong["index"].iloc[0])
    assert len(view.figures) == 2 and len(view.figures[1].data) == 4
    assert np.allclose(np.asarray(view.figures[1].data[0].z), tx[first, 0].numpy())
