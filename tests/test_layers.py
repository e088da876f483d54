"""The layer registry: option schemas, shape rules and parameter counts checked against the
torch modules the kinds build, code round trips, spec editing and linear-time building."""

import copy
import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.core.layers import REGISTRY, Layer, LayerKind, Option
from exburn_nb.core.spec import Spec

INPUTS = {"dense": (None, 6), "dropout": (None, 3, 5), "activation": (None, 2, 3, 4),
          "flatten": (None, 2, 3, 4), "batch_norm": (None, 3, 5, 5),
          "conv2d": (None, 3, 9, 7), "max_pool2d": (None, 2, 7, 6)}
GOOD = {"units": 5, "rate": 0.25, "fn": "tanh", "filters": 4, "kernel_size": 3, "stride": 2,
        "padding": 1, "activation": "relu", "pool_size": 3}


def bad_values(option: Option) -> list:
    """Values the option must refuse: wrong types, out of range, unknown names."""
    if option.type is str:
        return ["nope", 3] + ([] if option.optional else [None])
    values = ["3", True, [1], option.minimum - 1]
    if option.type is int:
        values.append(2.5)
    if option.maximum is not None:
        values.append(option.maximum + (0 if option.exclusive_maximum else 1))
    return values + ([] if option.choices else [None])


CASES = [(kind, o, v) for kind, lk in REGISTRY.items() for o in lk.options for v in bad_values(o)]


@pytest.mark.parametrize("kind, option, value", CASES,
                         ids=[f"{k}-{o.name}-{v!r}" for k, o, v in CASES])
def test_invalid_option_values_name_the_layer_option_value_and_expectation(kind, option, value):
    lk = REGISTRY[kind]
    options = {o.name: GOOD[o.name] for o in lk.options} | {option.name: value}
    with pytest.raises(ValueError) as err:
        lk.validate(options, "mine")
    message = str(err.value)
    assert message.startswith(f"layer 'mine' ({lk.type_name}): {option.name} must be ")
    assert message.endswith(f"; got {value!r}") and option.expected in message


def test_missing_and_unknown_options_are_named():
    with pytest.raises(ValueError, match=r"layer 'd' \(Dense\): units is required"):
        REGISTRY["dense"].validate({}, "d")
    with pytest.raises(ValueError, match="unknown option 'size'; the options are pool_size"):
        REGISTRY["max_pool2d"].validate({"size": 2}, "p")
    with pytest.raises(ValueError, match="unknown layer kind 'lstm'"):
        xb.input("x", shape=(None, 4)).insert(0, "lstm")


def test_validate_fills_defaults_in_schema_order_and_normalises_numbers():
    assert REGISTRY["conv2d"].validate({"kernel_size": 3, "filters": 2}, "c") == {
        "filters": 2, "kernel_size": 3, "stride": 1, "padding": "same", "activation": None}
    rate = REGISTRY["dropout"].validate({"rate": 0}, "d")["rate"]
    assert rate == 0.0 and isinstance(rate, float)


def test_every_kind_declares_its_schema():
    for kind, lk in REGISTRY.items():
        assert isinstance(lk, LayerKind) and lk.kind == kind and lk.type_name and lk.help
        for o in lk.options:
            assert o.help and o.expected
            if not o.required:
                assert o.validate(o.default) == o.default


def test_builder_calls_read_positional_options_as_each_kind_writes_them():
    """The spec's builder methods and :meth:`LayerKind.call_options` (the generic builder a
    kind without a method gets) take positional options in the same order, the order
    :meth:`LayerKind.code` writes them."""
    for kind, lk in REGISTRY.items():
        values = tuple(GOOD[o.name] for o in lk.positional)
        spec = xb.input("x", shape=INPUTS[kind])
        layer = getattr(spec, kind)(*values, name="l").layers[0]
        assert layer == Layer(kind, "l", lk.validate(lk.call_options(values, {}), "l"))
    with pytest.raises(TypeError, match=r"dense\(\) takes at most 2 positional options"):
        REGISTRY["dense"].call_options((1, "relu", 3), {})
    with pytest.raises(TypeError, match="option 'units' twice"):
        REGISTRY["dense"].call_options((1,), {"units": 2})


def test_the_specs_builder_methods_follow_their_kinds_schemas():
    """A kind's own builder method (the built-ins have one) takes its options in the
    kind's positional order with the schema's defaults, then ``name`` (a kind without one
    gets a generic builder saying the same: tests/test_sweep.py's new kind)."""
    for kind, lk in REGISTRY.items():
        params = list(inspect.signature(getattr(xb.input("x"), kind)).parameters.values())
        assert [(p.name, p.default) for p in params] == [
            (o.name, inspect.Parameter.empty if o.required else o.default)
            for o in lk.positional] + [("name", None)]


def test_the_kinds_say_which_of_them_stack_and_what_members_may_vary():
    assert [k for k, lk in REGISTRY.items() if lk.stackable] == [
        "dense", "dropout", "activation", "flatten"]
    assert {k: lk.member_options for k, lk in REGISTRY.items() if lk.member_options} == {
        "dropout": ("rate",)}
    with pytest.raises(ValueError, match="MaxPool2D layers have no stacked forward"):
        REGISTRY["max_pool2d"].stacked_forward([], [])
    weight = torch.arange(6.0).view(2, 3)
    assert torch.equal(REGISTRY["dense"].stack_layout("weight", weight), weight.t())
    assert REGISTRY["dense"].stack_layout("bias", weight) is weight


# ----------------------------------------------------------------- shapes and counts vs torch
def layer_cases():
    for kind, lk in REGISTRY.items():
        yield kind, Layer(kind, "l", lk.validate({o.name: GOOD[o.name] for o in lk.options}, "l"))
    yield "conv2d", Layer("conv2d", "l", REGISTRY["conv2d"].validate(
        {"filters": 2, "kernel_size": 2, "padding": "valid"}, "l"))
    yield "batch_norm", Layer("batch_norm", "l", {})


@pytest.mark.parametrize("kind, layer", list(layer_cases()))
def test_shape_rule_and_param_count_match_the_built_module(kind, layer):
    lk = REGISTRY[kind]
    shape = INPUTS[kind] if layer.options or kind != "batch_norm" else (None, 7)
    module = lk.build(layer, shape).eval()
    with torch.no_grad():
        out = module(torch.zeros(2, *shape[1:]))
    assert (None, *out.shape[1:]) == lk.output_shape(layer, shape)
    assert lk.count_params(layer, shape) == sum(p.numel() for p in module.parameters())


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 'd' \(Dense\) needs \(None, features\).*flatten"):
        xb.input("img", shape=(None, 1, 4, 4)).dense(3, name="d")
    assert xb.input("seq", shape=(None, 3, 5)).dense(2).output_shape == (None, 3, 2)
    with pytest.raises(ValueError, match=r"layer 'c' \(Conv2D\) needs an input of rank 4"):
        xb.input("x", shape=(None, 4)).conv2d(2, 3, name="c")


# ----------------------------------------------------------------- the spec's summary
def test_spec_summary_is_the_compiled_models_summary():
    spec = (xb.input("img", shape=(None, 3, 9, 7)).conv2d(8, 3, activation="relu")
            .batch_norm().max_pool2d().flatten().dropout(0.1).dense(6).batch_norm().dense(2))
    model = xb.compile(spec)
    assert spec.summary() == model.summary()
    assert spec._repr_html_() == model._repr_html_()
    assert spec.count_params() == model.count_params()
    assert spec.layer_params() == [sum(p.numel() for p in m.parameters())
                                   for m in model.module.children()]


def test_specs_are_immutable_so_copies_are_themselves():
    spec = mlp().dense(2)
    assert copy.copy(spec) is spec and copy.deepcopy(spec) is spec
    assert copy.deepcopy({"spec": spec})["spec"].dense(1).layers[-1].name == "dense_4"


def test_using_a_spec_as_a_model_says_to_compile_it_first(digits):
    spec = xb.input("input", shape=(None, 64)).dense(10)
    assert "Total params: 650" in spec.summary()
    with pytest.raises(ValueError, match=r"compile the spec first"):
        xb.evaluate(spec, digits[1])
    with pytest.raises(AttributeError, match="compile it first"):
        spec.predict(digits[1][0])
    assert not hasattr(spec, "_missing") and getattr(spec, "history", None) is None


# ----------------------------------------------------------------- code round trip
@st.composite
def option_values(draw, option: Option):
    if option.type is str:
        return draw(st.sampled_from(option.choices + ((None,) if option.optional else ())))
    if option.type is float:
        return draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    number = st.integers(int(option.minimum), int(option.minimum) + 4)
    return draw(st.one_of(number, st.sampled_from(option.choices)) if option.choices else number)


@st.composite
def random_specs(draw):
    """Random valid stacks of every kind, on vector or image inputs, with random edits."""
    if draw(st.booleans()):
        spec = xb.input("x", shape=(None, draw(st.integers(1, 9))))
    else:
        spec = xb.input("img", shape=(None, draw(st.integers(1, 3)), draw(st.integers(3, 10)),
                                      draw(st.integers(3, 10))))
    for i in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(sorted(REGISTRY)))
        options = {o.name: draw(option_values(o)) for o in REGISTRY[kind].options}
        if draw(st.booleans()):
            options["name"] = f"layer{i}"
        index = draw(st.integers(0, len(spec.layers)))
        try:
            spec = spec.insert(index, kind, **options)
        except ValueError:
            continue  # the kind cannot go there: the spec refused it
    return spec


def run_code(code: str) -> Spec:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the code under test
    return namespace["spec"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs())
def test_code_of_random_specs_builds_an_equal_spec(spec):
    again = run_code(spec.to_code())
    assert again == spec and again.layer_shapes == spec.layer_shapes
    assert eval(repr(spec), {"xb": xb}) == spec  # noqa: S307 - repr is the code on one line
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.count_params() == sum(p.numel() for p in spec.build().parameters())


def test_code_is_formatted_and_leaves_out_automatic_names():
    spec = (xb.input("input", shape=(None, 784)).dense(256, activation="relu", name="hidden1")
            .dropout(rate=0.2).dense(10, name="output"))
    assert spec.to_code() == (
        'import exburn_nb as xb\n\n'
        'spec = (\n'
        '    xb.input("input", shape=(None, 784))\n'
        '    .dense(256, activation="relu", name="hidden1")\n'
        '    .dropout(rate=0.2)\n'
        '    .dense(10, name="output")\n'
        ')\n')
    assert xb.input("x", shape=(None, 2)).to_code(variable="s").endswith(
        's = xb.input("x", shape=(None, 2))\n')
    moved = xb.input("x", shape=(None, 2)).dense(3).dense(3).remove(0)  # keeps "dense_2"
    assert '.dense(3, name="dense_2")' in moved.to_code()
    assert run_code(moved.to_code()) == moved


# ----------------------------------------------------------------- insert, remove, replace
def mlp() -> Spec:
    return (xb.input("x", shape=(None, 4)).dense(8, activation="relu", name="h")
            .dropout(0.2).dense(3, name="out"))


def test_insert_remove_replace_return_new_specs():
    spec = mlp()
    before = spec.to_dict()
    wider = spec.replace("h", units=16)
    assert wider.layers[0].options == {"units": 16, "activation": "relu"}
    assert wider.layer_shapes[0][1] == (None, 16) and wider.count_params() == 80 + 51
    assert spec.insert(1, "batch_norm").layers[1] == Layer("batch_norm", "batch_norm_1", {})
    assert [la.name for la in spec.insert(3, "activation", fn="softmax").layers][-1] == \
        "activation_1"
    assert [la.name for la in spec.insert(-1, "dropout", name="d").layers] == \
        ["h", "dropout_1", "d", "out"]
    assert [la.name for la in spec.remove("dropout_1").layers] == ["h", "out"]
    assert spec.remove(-1).output_shape == (None, 8)
    swapped = spec.replace(1, "batch_norm")
    assert swapped.layers[1] == Layer("batch_norm", "dropout_1", {})
    assert spec.replace(1, "batch_norm", name="bn").layers[1].name == "bn"
    assert spec.replace("out", name="logits").layers[2] == Layer(
        "dense", "logits", {"units": 3, "activation": None})
    assert spec.to_dict() == before  # unchanged


def test_edits_that_break_the_stack_are_value_errors_naming_the_layer():
    img = xb.input("img", shape=(None, 1, 8, 8)).conv2d(4, 3).flatten(name="f").dense(3, name="d")
    with pytest.raises(ValueError, match=r"layer 'd' \(Dense\) needs \(None, features\)"):
        img.remove("f")
    with pytest.raises(ValueError, match=r"layer 'c' \(Conv2D\) needs an input of rank 4"):
        img.insert(2, "conv2d", filters=2, kernel_size=3, name="c")
    with pytest.raises(ValueError, match=r"layer 'h' \(Dense\): units must be an integer >= 1"):
        mlp().replace("h", units=0)
    with pytest.raises(ValueError, match="'out' is already used"):
        mlp().replace("h", name="out")
    with pytest.raises(ValueError, match="no layer is named 'nope'"):
        mlp().remove("nope")
    with pytest.raises(ValueError, match=r"index_or_name must be .* \[-3, 3\).* got 3"):
        mlp().replace(3, units=2)
    with pytest.raises(ValueError, match=r"index must be an integer in \[-3, 3\]"):
        mlp().insert(4, "flatten")


# ----------------------------------------------------------------- linear-time building
@pytest.fixture
def inferences(monkeypatch):
    """Counts calls of every kind's shape rule."""
    calls = []
    for lk in REGISTRY.values():
        rule = type(lk).output_shape

        def counted(self, layer, shape, rule=rule):
            calls.append(layer.name)
            return rule(self, layer, shape)
        monkeypatch.setattr(type(lk), "output_shape", counted)
    return calls


def test_building_infers_each_shape_once(inferences):
    n = 20_000
    data = {"input": {"name": "x", "shape": [None, 4]},
            "layers": [{"kind": "dense" if i % 2 else "dropout", "name": f"l{i}", "units": 4}
                       if i % 2 else {"kind": "dropout", "name": f"l{i}", "rate": 0.1}
                       for i in range(n)]}
    spec = Spec.from_dict(data)
    assert len(inferences) == n and len(spec.layers) == n  # the old builder made n(n+1)/2
    inferences.clear()
    chained = xb.input("x", shape=(None, 4))
    for _ in range(2_000):
        chained = chained.dense(4)
    assert len(inferences) == 2_000
    inferences.clear()
    spec.insert(n - 3, "batch_norm")
    spec.replace(n - 2, rate=0.3)
    spec.remove(n - 1)
    assert len(inferences) == 4 + 2 + 0  # only the layers from the edit on
