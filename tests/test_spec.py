"""Specs: the builder, auto-naming, shapes (checked against what torch produces), the
Glorot-uniform init, and JSON round trips (property tests on random layer chains)."""

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import exburn_nb as xb
from exburn_nb.core.spec import ACTIVATIONS, Spec


def guide_spec() -> Spec:
    return (xb.input("input", shape=(None, 784))
            .dense(256, activation="relu", name="hidden1")
            .dropout(rate=0.2)
            .dense(128, activation="relu", name="hidden2")
            .dropout(rate=0.2)
            .dense(10, name="output"))


# ----------------------------------------------------------------- counts and init
def test_guide_mlp_has_235146_parameters():
    model = xb.compile(guide_spec())
    assert model.count_params() == 235_146
    assert sum(p.numel() for p in model.parameters().values()) == 235_146
    sizes = {name: p.numel() for name, p in model.parameters().items()}
    assert sizes == {"hidden1.weight": 784 * 256, "hidden1.bias": 256,
                     "hidden2.weight": 256 * 128, "hidden2.bias": 128,
                     "output.weight": 128 * 10, "output.bias": 10}


def test_dense_weights_are_glorot_uniform_and_biases_zero():
    model = xb.compile(guide_spec(), seed=0)
    params = {k: v.detach() for k, v in model.parameters().items()}
    for layer in ("hidden1", "hidden2", "output"):
        w, b = params[f"{layer}.weight"], params[f"{layer}.bias"]
        fan_out, fan_in = w.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.9 * bound  # uniform over the whole range
        # the std of U(-a, a) is a / sqrt(3): not some other init with the same bound
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(b) == 0


def test_conv_weights_are_glorot_uniform_with_receptive_field_fans():
    spec = xb.input("img", shape=(None, 3, 8, 8)).conv2d(16, 3, name="conv")
    w = xb.compile(spec, seed=1).parameters()["conv.weight"].detach()
    fan_in, fan_out = 3 * 3 * 3, 16 * 3 * 3
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert float(w.abs().max()) <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert torch.count_nonzero(xb.compile(spec).parameters()["conv.bias"]) == 0


def test_seed_makes_initialisation_reproducible():
    a = xb.compile(guide_spec(), seed=3).parameters()
    b = xb.compile(guide_spec(), seed=3).parameters()
    c = xb.compile(guide_spec(), seed=4).parameters()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["hidden1.weight"], c["hidden1.weight"])


# ----------------------------------------------------------------- naming
def test_unnamed_layers_are_numbered_per_kind():
    spec = (xb.input("input", shape=(None, 4)).dense(8).dropout().dense(6).dropout()
            .activation("relu").dense(2))
    assert [la.name for la in spec.layers] == [
        "dense_1", "dropout_1", "dense_2", "dropout_2", "activation_1", "dense_3"]


def test_guide_mlp_dropouts_are_named_like_the_guide_summary():
    names = [la.name for la in guide_spec().layers]
    assert names == ["hidden1", "dropout_1", "hidden2", "dropout_2", "output"]


def test_auto_names_skip_names_already_taken():
    spec = xb.input("input", shape=(None, 4)).dense(3, name="dense_2").dense(3).dense(3)
    assert [la.name for la in spec.layers] == ["dense_2", "dense_3", "dense_4"]


@pytest.mark.parametrize("name", ["hidden", "input"])
def test_duplicate_names_are_an_error(name):
    spec = xb.input("input", shape=(None, 4)).dense(3, name="hidden")
    with pytest.raises(ValueError, match=f"{name!r} is already used"):
        spec.dense(2, name=name)


@pytest.mark.parametrize("name", ["1st", "has space", "a-b", "", 7])
def test_layer_names_must_be_identifiers(name):
    with pytest.raises(ValueError, match="name must be a Python identifier"):
        xb.input("input", shape=(None, 4)).dense(3, name=name)


def test_builder_returns_new_specs_and_leaves_the_old_one_alone():
    base = xb.input("input", shape=(None, 4))
    a = base.dense(3, name="a")
    b = base.dense(5, name="a")
    assert base.layers == ()
    assert a.output_shape == (None, 3) and b.output_shape == (None, 5)
    assert a != b and a == base.dense(3, name="a")


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize("shape", [(784,), (1, 784), (None,), (None, 0), (None, -3),
                                   (None, 2.5), (None, True), "784"])
def test_input_shape_must_be_none_then_positive_ints(shape):
    with pytest.raises(ValueError, match="shape must be"):
        xb.input("input", shape=shape)


@pytest.mark.parametrize("call, match", [
    (lambda s: s.dense(0), "units"),
    (lambda s: s.dense(2.0), "units"),
    (lambda s: s.dense(3, activation="swish"), "activation"),
    (lambda s: s.dropout(rate=1.0), "rate"),
    (lambda s: s.dropout(rate=-0.1), "rate"),
    (lambda s: s.activation("nope"), "fn"),
    (lambda s: s.activation(None), "fn"),
    (lambda s: s.conv2d(4, 3), "rank 4"),
    (lambda s: s.max_pool2d(), "rank 4"),
])
def test_bad_layer_options_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(xb.input("input", shape=(None, 4)))


def test_conv_shape_errors():
    img = xb.input("img", shape=(None, 1, 4, 4))
    with pytest.raises(ValueError, match="kernel_size 5 is larger"):
        img.conv2d(2, 5, padding="valid")
    with pytest.raises(ValueError, match="pool_size 8 is"):
        img.max_pool2d(8)
    with pytest.raises(ValueError, match="odd kernel_size"):
        img.conv2d(2, 2, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding"):
        img.conv2d(2, 3, padding="full")
    with pytest.raises(ValueError, match="rank 2 or 4"):
        xb.input("seq", shape=(None, 3, 5)).batch_norm()


def test_output_activation_looks_through_dropout():
    spec = xb.input("input", shape=(None, 4)).dense(3, activation="softmax").dropout(0.1)
    assert spec.output_activation == "softmax"
    assert xb.input("input", shape=(None, 4)).dense(3).output_activation is None
    assert (xb.input("input", shape=(None, 4)).dense(3).activation("sigmoid")
            .output_activation == "sigmoid")
    assert xb.input("input", shape=(None, 4)).dense(3, activation="relu").flatten() \
        .output_activation is None
    img = xb.input("img", shape=(None, 1, 4, 4))
    assert img.conv2d(2, 3, activation="sigmoid").dropout(0.5).output_activation == "sigmoid"
    assert img.conv2d(2, 3, activation="sigmoid").max_pool2d().output_activation is None
    assert img.flatten().batch_norm().output_activation is None
    assert img.flatten().dropout().output_activation is None


# ----------------------------------------------------------------- shapes vs torch
def actual_shapes(spec: Spec, batch: int = 3) -> list[tuple]:
    """Each layer's output shape as torch computes it, batch dimension as None."""
    net = spec.build().eval()
    shapes = []
    for child in net.children():
        child.register_forward_hook(lambda _m, _i, out: shapes.append((None, *out.shape[1:])))
    with torch.no_grad():
        out = net(torch.randn(batch, *spec.input_shape[1:]))
    assert out.shape[0] == batch
    return shapes


def test_conv_pool_flatten_batch_norm_shapes_match_torch():
    spec = (xb.input("img", shape=(None, 3, 9, 7))
            .conv2d(8, 3, activation="relu", name="c1")            # same: 9x7
            .batch_norm(name="bn")
            .max_pool2d(2, name="p1")                              # 4x3
            .conv2d(5, 3, stride=2, padding="same", name="c2")     # ceil: 2x2
            .conv2d(4, 2, padding="valid", name="c3")              # 1x1
            .flatten(name="flat")
            .dense(6, name="d")
            .batch_norm(name="bn2"))
    expected = [(None, 8, 9, 7), (None, 8, 9, 7), (None, 8, 4, 3), (None, 5, 2, 2),
                (None, 4, 1, 1), (None, 4), (None, 6), (None, 6)]
    assert [shape for _, shape in spec.layer_shapes] == expected
    assert actual_shapes(spec) == expected
    assert spec.output_shape == (None, 6)
    built = spec.build()
    assert isinstance(built.bn, nn.BatchNorm2d) and isinstance(built.bn2, nn.BatchNorm1d)


@st.composite
def image_specs(draw):
    """Random valid conv chains: conv2d / max_pool2d / batch_norm / activation, then flatten
    and dense."""
    spec = xb.input("img", shape=(None, draw(st.integers(1, 3)), draw(st.integers(4, 12)),
                                  draw(st.integers(4, 12))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["conv", "pool", "bn", "act"]))
        try:
            if op == "conv":
                spec = spec.conv2d(draw(st.integers(1, 5)), draw(st.integers(1, 4)),
                                   stride=draw(st.integers(1, 3)),
                                   padding=draw(st.sampled_from(["same", "valid", 0, 1, 2])),
                                   activation=draw(st.sampled_from([None, "relu", "tanh"])))
            elif op == "pool":
                spec = spec.max_pool2d(draw(st.integers(1, 3)))
            elif op == "bn":
                spec = spec.batch_norm()
            else:
                spec = spec.activation(draw(st.sampled_from(ACTIVATIONS)))
        except ValueError:
            continue  # an invalid option for this shape: the builder refused it; skip it
    return spec.flatten().dense(draw(st.integers(1, 5)))


@st.composite
def dense_specs(draw):
    """Random valid dense chains with dropout, activations and batch norm, named or not."""
    spec = xb.input(draw(st.sampled_from(["input", "x", "features"])),
                    shape=(None, draw(st.integers(1, 10))))
    used = set()
    for i in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.none(), st.sampled_from(["h", "hidden", "out", "block"])))
        if name is not None:
            name = f"{name}{i}"
            used.add(name)
        op = draw(st.sampled_from(["dense", "dropout", "act", "bn"]))
        if op == "dense":
            spec = spec.dense(draw(st.integers(1, 12)),
                              activation=draw(st.sampled_from([None, *ACTIVATIONS])), name=name)
        elif op == "dropout":
            spec = spec.dropout(draw(st.floats(0, 0.9)), name=name)
        elif op == "act":
            spec = spec.activation(draw(st.sampled_from(ACTIVATIONS)), name=name)
        else:
            spec = spec.batch_norm(name=name)
    return spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(dense_specs(), image_specs()))
def test_json_round_trip_of_random_specs(spec):
    text = spec.to_json()
    json.loads(text)  # valid JSON
    again = Spec.from_json(text)
    assert again == spec
    assert again.layers == spec.layers
    assert again.input_name == spec.input_name and again.input_shape == spec.input_shape
    assert again.layer_shapes == spec.layer_shapes
    assert Spec.from_dict(json.loads(spec.to_json(indent=2))) == spec
    names = [la.name for la in spec.layers]
    assert len(set(names)) == len(names)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(dense_specs(), image_specs()))
def test_inferred_shapes_of_random_specs_match_torch(spec):
    assert actual_shapes(spec) == [shape for _, shape in spec.layer_shapes]
    assert list(dict(spec.build().named_children())) == [la.name for la in spec.layers]


@pytest.mark.parametrize("text", [
    "not json",
    json.dumps({"input": {"name": "input"}, "layers": []}),
    json.dumps({"input": {"name": "input", "shape": [None, 4]},
                "layers": [{"kind": "lstm", "name": "l"}]}),
    json.dumps({"input": {"name": "input", "shape": [None, 4]},
                "layers": [{"kind": "dense", "name": "d"}]}),
    json.dumps({"input": {"name": "input", "shape": [None, 4]},
                "layers": [{"kind": "dense", "name": "d", "units": 3, "bogus": 1}]}),
    json.dumps({"input": {"name": "input", "shape": [None, 4]},
                "layers": [{"kind": "dense", "name": "d", "units": -3}]}),
])
def test_invalid_spec_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        Spec.from_json(text)


def test_spec_json_keeps_the_guide_model():
    spec = guide_spec()
    data = json.loads(spec.to_json())
    assert data["input"] == {"name": "input", "shape": [None, 784]}
    assert data["layers"][0] == {"kind": "dense", "name": "hidden1", "units": 256,
                                 "activation": "relu"}
    assert data["layers"][1] == {"kind": "dropout", "name": "dropout_1", "rate": 0.2}
    assert hash(Spec.from_json(spec.to_json())) == hash(spec)


def test_dropout_layer_matches_torch_dropout_in_distribution_and_scaling():
    from exburn_nb.core.spec import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.3)
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    zeroed = (y == 0).float().mean().item()
    assert abs(zeroed - 0.3) < 0.005
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))  # kept values scaled by 1/keep
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through kept units only
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dense_with_activation_equals_linear_then_activation():
    spec = xb.input("input", shape=(None, 5)).dense(4, activation="gelu", name="d")
    net = spec.build()
    x = torch.randn(3, 5)
    expected = torch.nn.functional.gelu(torch.nn.functional.linear(x, net.d.weight, net.d.bias))
    torch.testing.assert_close(net(x), expected)


# ----------------------------------------------------------------- shared JSON: limits
def spec_text(layers: list, shape: list | None = None) -> str:
    return json.dumps({"input": {"name": "x", "shape": shape or [None, 2]}, "layers": layers})


def dense(units, name="d", **options) -> dict:
    return {"kind": "dense", "name": name, "units": units, **options}


@pytest.mark.parametrize("text, match", [
    (spec_text([dense(10**100)]), r"layer 'd' \(Dense\) has more than 10\*\*30 values .*MAX_UNITS"),
    (spec_text([dense(2**24 + 1)]), r"16,777,217 values per sample; at most 16,777,216"),
    (spec_text([], [None, 10**100]), r"input 'x' has .*MAX_UNITS"),
    (spec_text([{"kind": "conv2d", "name": "c", "filters": 4, "kernel_size": 1,
                 "padding": 10**6}], [None, 1, 8, 8]), r"layer 'c' \(Conv2D\).*MAX_UNITS"),
    (spec_text([dense(20_000, "a"), dense(20_000, "b")]), r"400,080,000 parameters.*MAX_PARAMS"),
    (spec_text([dense(1_000_001)], [None, 299]), r"300,000,300 parameters; at most 300,000,000"),
    (spec_text([{"kind": "dropout", "name": f"d{i}"} for i in range(200_000)]),
     r"layers has 200,000 entries; at most 10,000 \(MAX_LAYERS\)"),
    (spec_text([dense(10**400)]), r"layer 'd' \(Dense\) has more than 10\*\*30 values"),
    (spec_text([{"kind": "dropout", "name": "r", "rate": 10**400}]),
     r"layer 'r' \(Dropout\): rate must be a number in \[0, 1\)"),
], ids=["units 1e100", "units over", "input 1e100", "conv padding", "params 4e8",
        "params just over", "200k layers", "units 1e400", "rate 1e400"])
def test_spec_json_past_a_limit_is_refused_naming_it(text, match):
    with pytest.raises(ValueError, match=match):
        Spec.from_json(text)


def test_spec_json_at_the_limits_is_kept():
    from exburn_nb.core.spec import MAX_LAYERS, MAX_PARAMS, MAX_UNITS

    at_params = Spec.from_json(spec_text([dense(1_000_000)], [None, 299]))
    assert at_params.count_params() == MAX_PARAMS  # counted from the shapes, not built
    assert Spec.from_json(spec_text([dense(MAX_UNITS)], [None, 1])).output_shape == (None, MAX_UNITS)
    long = Spec.from_json(spec_text([{"kind": "dropout", "name": f"d{i}"}
                                     for i in range(MAX_LAYERS)]))
    assert len(long.layers) == MAX_LAYERS
    with pytest.raises(ValueError, match="MAX_PARAMS"):  # the same check, from Python
        xb.input("x", shape=(None, 299)).dense(1_000_001).check_limits()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
                                  '{"input": {"name": "x", "shape": ' + "[" * 65 + "]" * 65 + "}}"])
def test_deeply_nested_spec_json_is_a_value_error(text):
    with pytest.raises(ValueError, match="deep"):
        Spec.from_json(text)


def test_spec_json_must_be_text():
    with pytest.raises(TypeError, match="text must be"):
        Spec.from_json(10**10)  # never bytes(10**10)
    with pytest.raises(ValueError, match="not valid JSON"):
        Spec.from_json('{"input": NaN}')


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=st.integers(0, 3), key=st.sampled_from(["kind", "name", "units", "rate", "filters",
                                                      "kernel_size", "padding", "activation"]),
       value=JSON_VALUES, input_value=st.one_of(st.none(), JSON_VALUES))
def test_any_json_value_in_a_spec_is_kept_or_a_value_error(layer, key, value, input_value):
    data = json.loads(spec_text([{"kind": "conv2d", "name": "c", "filters": 2, "kernel_size": 3},
                                 {"kind": "flatten", "name": "f"},
                                 {"kind": "dropout", "name": "d", "rate": 0.1},
                                 dense(3)], [None, 1, 8, 8]))
    data["layers"][layer][key] = value
    if input_value is not None:
        data["input"]["shape"] = input_value
    try:
        spec = Spec.from_json(json.dumps(data))
    except ValueError:
        return
    assert spec.count_params() <= 300_000_000 and len(spec.layers) == 4
