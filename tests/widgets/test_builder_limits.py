"""The model builder's own layer limit: from_spec refuses a spec its edits would crawl on."""

import pytest

import exburn_nb as xb
from exburn_nb.widgets.builder import MAX_BUILDER_LAYERS, ModelBuilder


def stack(layers: int):
    spec = xb.input("x", shape=(None, 4))
    for _ in range(layers - 1):
        spec = spec.dense(4, activation="relu")
    return spec.dense(3, name="out")


def test_from_spec_refuses_more_layers_than_its_limit():
    with pytest.raises(ValueError, match=rf"spec has {MAX_BUILDER_LAYERS + 1} layers; the builder "
                                         rf"takes at most {MAX_BUILDER_LAYERS} \(MAX_BUILDER_LAYERS"):
        ModelBuilder.from_spec(stack(MAX_BUILDER_LAYERS + 1))
    with pytest.raises(ValueError, match="1,600|1600 layers"):
        ModelBuilder.from_spec(stack(1_600))


def test_from_spec_takes_a_spec_at_its_limit():
    builder = ModelBuilder.from_spec(stack(MAX_BUILDER_LAYERS))
    assert len(builder.spec.layers) == MAX_BUILDER_LAYERS and builder.errors == []
