"""The model builder driven in-process: buttons clicked, option widgets set, and every view
checked against what ``xb.compile(builder.spec)`` really builds."""

import html

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.core.draft import PRESETS, infer_output, preset_rows
from exburn_nb.core.layers import REGISTRY
from exburn_nb.core.summary import format_shape
from exburn_nb.widgets import ModelBuilder


def run_code(code: str) -> xb.Spec:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the code under test
    return namespace["spec"]


def assert_views_match_the_compiled_model(b: ModelBuilder) -> None:
    """Summary, counts, per-row shapes, diagram and code agree with the compiled spec."""
    assert not b.errors
    model = xb.compile(b.spec)
    assert b.summary() == model.summary()
    assert f"Total params: {model.count_params():,}" in b.params.value
    assert f"Total params: {model.count_params():,}" in b.summary_html.value
    shapes = [format_shape(s) for s in model._shapes]
    assert [box.shape.value for box in b.rows_box.children] == [f"→ {s}" for s in shapes]
    assert all(s in b.diagram.value for s in shapes)
    assert run_code(b.code) == b.spec
    assert not b.compile_button.disabled


def row(b: ModelBuilder, i: int):
    return b.rows_box.children[i]


def option(b: ModelBuilder, i: int, name: str):
    (widget,) = [w for w in row(b, i).controls.children
                 if f"xb-builder-option-{name}" in w._dom_classes]
    return widget


def button(b: ModelBuilder, i: int, css: str):
    (widget,) = [w for w in row(b, i).controls.children if css in w._dom_classes]
    return widget


# ----------------------------------------------------------------- starting points
def test_the_output_layer_and_loss_come_from_the_data(digits):
    (x, y), (tx, ty) = digits
    b = ModelBuilder((x, y), validation_data=(tx, ty))
    assert b.input_shape == (None, 64) and b.loss == "cross_entropy"
    assert b.spec.layers[-1].options == {"units": 10, "activation": None}
    assert infer_output(torch.tensor([0.0, 1.0, 1.0])) == (1, "binary_cross_entropy")
    assert infer_output(torch.randn(5, 3)) == (3, "mse")
    assert infer_output(torch.tensor([0.5, 1.0])) == (1, "mse")
    assert infer_output([[0.0], [1.0]]) == (1, "mse")  # a column, not a vector
    image = ModelBuilder((x.reshape(-1, 1, 8, 8), y))
    assert image.input_shape == (None, 1, 8, 8)
    assert "small CNN" in image.preset.options and "small CNN" not in b.preset.options


def test_start_from_a_shape_a_spec_or_a_model(mlp):
    b = ModelBuilder(input_shape=(None, 64), output_units=10, loss="cross_entropy")
    assert b.spec == xb.input("input", shape=(None, 64)).dense(10, name="output")
    model = mlp(optimizer="sgd", learning_rate=0.05)
    from_model = ModelBuilder.from_model(model)
    assert from_model.spec == model.spec
    assert (from_model.optimizer.value, from_model.learning_rate.value) == ("sgd", 0.05)
    spec = xb.input("x", shape=(None, 3)).dense(4, name="h").dense(2, activation="softmax")
    assert ModelBuilder.from_spec(spec).spec == spec
    with pytest.raises(ValueError, match="input_shape=.* and output_units"):
        ModelBuilder()
    with pytest.raises(ValueError, match="last layer is a dense output layer"):
        ModelBuilder.from_spec(xb.input("x", shape=(None, 3)).dropout())
    with pytest.raises(ValueError, match="the data needs 3"):
        ModelBuilder.from_spec(spec, (torch.randn(4, 3), torch.tensor([0, 1, 2, 0])))
    with pytest.raises(ValueError, match=r"data must be an \(x, y\) pair"):
        ModelBuilder(torch.randn(4, 3))
    with pytest.raises(ValueError, match="loss must be one of"):
        ModelBuilder(input_shape=(None, 2), output_units=1, loss="hinge")


@pytest.mark.parametrize("shape", [(None, 64), (None, 1, 8, 8), (None, 3, 5, 7)])
def test_every_preset_builds_and_round_trips_through_its_code(shape):
    b = ModelBuilder(input_shape=shape, output_units=4)
    for label in b.preset.options:
        b.preset.value = label
        b.preset_button.click()
        assert b.rows == preset_rows(PRESETS[label], shape)
        assert len(b.spec.layers) == len(b.rows) + 1
        assert_views_match_the_compiled_model(b)
    b.load_preset("mlp")
    assert [la.name for la in b.spec.layers][-5:] == [
        "hidden1", "dropout_1", "hidden2", "dropout_2", "output"]
    if len(shape) == 2:
        with pytest.raises(ValueError, match="needs an image input"):
            b.load_preset("cnn")
    assert set(PRESETS.values()) == {"logistic_regression", "mlp", "cnn"}


def test_the_guide_mlp_preset_is_the_guides_model_for_784_inputs():
    b = ModelBuilder(input_shape=(None, 784), output_units=10)
    b.load_preset("MLP")
    assert xb.compile(b.spec).count_params() == 235_146


# ----------------------------------------------------------------- editing
def test_clicks_and_calls_keep_every_view_equal_to_the_compiled_model():
    b = ModelBuilder(input_shape=(None, 1, 8, 8), output_units=10)
    b.add("flatten")
    assert_views_match_the_compiled_model(b)
    b.add_kind.value = "dense"
    b.add_after.value = 0  # after flatten_1
    b.add_button.click()
    assert [r.kind for r in b.rows] == ["flatten", "dense"]
    assert_views_match_the_compiled_model(b)
    option(b, 1, "units").value = 20
    option(b, 1, "activation").value = "tanh"
    assert b.spec.layers[1].options == {"units": 20, "activation": "tanh"}
    assert_views_match_the_compiled_model(b)
    b.add("conv2d", index=0, filters=4, kernel_size=3)
    b.add("max_pool2d", index=1)
    b.add("dropout", rate=0.25)
    assert_views_match_the_compiled_model(b)
    button(b, 4, "xb-builder-up").click()  # the dropout above the dense layer
    assert [r.kind for r in b.rows] == ["conv2d", "max_pool2d", "flatten", "dropout", "dense"]
    assert_views_match_the_compiled_model(b)
    button(b, 3, "xb-builder-down").click()
    button(b, 4, "xb-builder-delete").click()
    assert [r.kind for r in b.rows] == ["conv2d", "max_pool2d", "flatten", "dense"]
    option(b, 0, "padding").value = "valid"
    option(b, 0, "stride").value = 2
    assert b.spec.layers[0].options["padding"] == "valid"
    assert_views_match_the_compiled_model(b)
    row(b, 1).controls.children[1].value = "batch_norm"  # the kind dropdown
    assert b.spec.layers[1].kind == "batch_norm"
    assert_views_match_the_compiled_model(b)
    b.set(4, activation="softmax", name="probs")
    assert b.spec.layers[-1].name == "probs" and b.spec.output_activation == "softmax"
    b.move(3, 2)
    assert b.errors and "needs (None, features)" in b.errors[0][1]  # dense before flatten


def widgets_of(box) -> list:
    return [*box.controls.children, box.controls, box.error, box]


def test_an_edit_keeps_the_rows_it_leaves_alone_and_closes_the_rows_it_replaces():
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    b.add("dense", units=3)
    dense, output = row(b, 0), row(b, 1)
    b.add("dropout", index=0)  # the dense row moves down, as it was
    assert row(b, 1) is dense and row(b, 2) is output
    assert [row(b, i).number.value for i in range(3)] == ["<b>0</b>", "<b>1</b>", "<b>2</b>"]
    assert [button(b, i, "xb-builder-up").disabled for i in range(3)] == [True, False, True]
    assert [button(b, i, "xb-builder-down").disabled for i in range(3)] == [False, True, True]
    assert all(w.comm is not None for box in (dense, output) for w in widgets_of(box))
    button(b, 1, "xb-builder-up").click()  # the moved row's buttons act where it is now
    assert [r.kind for r in b.rows] == ["dense", "dropout"] and row(b, 0) is dense
    option(b, 0, "units").value = 5  # typed: the row keeps its widgets
    row(b, 0).controls.children[2].value = "wide"  # the name field
    assert row(b, 0) is dense and b.spec.layers[0].options["units"] == 5
    assert b.spec.layers[0].name == "wide" and b.add_after.options[1] == ("0: wide", 0)
    b.set(0, units=6)  # set from code: the row is drawn again, its old widgets closed
    assert row(b, 0) is not dense and option(b, 0, "units").value == 6
    assert all(w.comm is None for w in widgets_of(dense))
    dropout = row(b, 1)
    button(b, 1, "xb-builder-delete").click()
    assert [r.kind for r in b.rows] == ["dense"] and row(b, 1) is output
    assert all(w.comm is None for w in widgets_of(dropout))
    assert all(w.comm is not None for w in widgets_of(row(b, 0)))


def test_show_code_toggles_the_code_and_its_copy_button():
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    assert b.code_box.layout.display == "none"
    b.show_code.value = True
    assert b.code_box.layout.display is None and b.code_box.value == b.code
    assert "xb-builder-copy" in b.copy_html.value
    b.add("dense", units=3)
    assert '.dense(3)' in b.code_box.value


@st.composite
def edits(draw):
    """A random sequence of valid-option edits through the Python API (stacks may turn
    invalid: those are reported, not raised)."""
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(sorted(REGISTRY)))
        opts = {}
        for o in REGISTRY[kind].options:
            if o.type is str:
                opts[o.name] = draw(st.sampled_from(o.choices))
            elif o.type is float:
                opts[o.name] = draw(st.sampled_from([0.0, 0.3]))
            elif draw(st.booleans()):
                opts[o.name] = draw(st.integers(int(o.minimum) + 1, int(o.minimum) + 3))
        steps.append((draw(st.sampled_from(["add", "add", "remove", "move"])), kind, opts,
                      draw(st.integers(0, 20)), draw(st.integers(0, 20))))
    return steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=st.booleans(), steps=edits())
def test_random_edits_keep_the_code_and_views_true(image, steps):
    b = ModelBuilder(input_shape=(None, 2, 6, 6) if image else (None, 5), output_units=3)
    for action, kind, opts, i, j in steps:
        n = len(b.rows)
        if action == "add":
            b.add(kind, index=i % (n + 1), **opts)
        elif action == "remove" and n:
            b.remove(i % n)
        elif action == "move" and n:
            b.move(i % n, j % n)
        if not b.errors:
            assert_views_match_the_compiled_model(b)
        else:
            assert b.compile_button.disabled
            assert run_code(b.code) == b.spec


# ----------------------------------------------------------------- invalid edits
@pytest.fixture
def image_builder():
    b = ModelBuilder(input_shape=(None, 1, 8, 8), output_units=10)
    b.load_preset("cnn")
    return b


def assert_marked(b: ModelBuilder, index: int, *words: str, valid: xb.Spec) -> None:
    """The row is marked with its reason, Compile is off, the last valid spec stays."""
    assert b.compile_button.disabled
    assert index in dict(b.errors)
    message = dict(b.errors)[index]
    assert all(w in message for w in words), message
    assert message in html.unescape(row(b, index).error.value)
    assert b.spec == valid
    assert "shown up to layer" in b.params.value
    assert "Compile is off" in b.status.value


def test_invalid_edits_are_marked_and_compile_waits(image_builder):
    b = image_builder
    valid = b.spec
    flatten = [r.kind for r in b.rows].index("flatten")
    b.add("conv2d", index=flatten + 1)  # a conv2d after flatten
    assert_marked(b, flatten + 1, "conv2d_3", "rank 4", valid=valid)
    assert b.summary().count("\n") < valid.summary().count("\n")  # up to the first bad row
    with pytest.raises(ValueError, match="fix the stack before compiling"):
        b.compile()
    b.remove(flatten + 1)
    assert not b.errors and not b.compile_button.disabled

    b.add("dense", index=0)  # a dense on an image
    assert_marked(b, 0, "dense_1", "add .flatten() before it", valid=valid)
    button(b, 0, "xb-builder-delete").click()

    hidden = [r.name for r in b.rows].index("hidden")
    option(b, hidden, "units").value = 0  # typed into the widget: marked, not raised
    assert_marked(b, hidden, "'hidden'", "units must be an integer >= 1; got 0", valid=valid)
    option(b, hidden, "units").value = 64

    b.add("dropout", index=hidden + 1)
    valid = b.spec
    option(b, hidden + 1, "rate").value = 1.0
    assert_marked(b, hidden + 1, "'dropout_1'", "rate must be a number in [0, 1)", valid=valid)
    option(b, hidden + 1, "rate").value = 0.5

    row(b, 1).controls.children[2].value = "conv1"  # the name field: a duplicate name
    assert_marked(b, 1, "'conv1'", "already used by layer 0", valid=valid)
    row(b, 1).controls.children[2].value = "1st pool"
    assert_marked(b, 1, "layer 1: name must be a Python identifier", valid=valid)
    row(b, 1).controls.children[2].value = "pool1"

    option(b, 0, "padding").value = "full"
    assert_marked(b, 0, "'conv1'", "padding must be 'same', 'valid' or an integer >= 0",
                  valid=valid)
    option(b, 0, "padding").value = "1"
    assert b.spec.layers[0].options["padding"] == 1 and not b.errors
    assert_views_match_the_compiled_model(b)


@pytest.mark.parametrize("call, match", [
    (lambda b: b.add("lstm"), "kind: unknown layer kind 'lstm'"),
    (lambda b: b.add("dense", units="8"), "units must be an integer >= 1; got '8'"),
    (lambda b: b.add("dense", units=0), "units must be an integer >= 1; got 0"),
    (lambda b: b.add("dropout", rate=1.0), r"rate must be a number in \[0, 1\)"),
    (lambda b: b.add("dense", size=3), "unknown option 'size'"),
    (lambda b: b.add("dense", index=5), r"index must be an integer in \[0, 2\)"),
    (lambda b: b.add("dense", name="a b"), "name must be a Python identifier"),
    (lambda b: b.remove(1), r"index must be an integer in \[0, 1\)"),
    (lambda b: b.move(0, 1), r"new_index must be an integer in \[0, 1\)"),
    (lambda b: b.set(3, units=2), r"index must be an integer in \[0, 2\)"),
    (lambda b: b.set(1, units=2), "the output layer stays a dense layer"),
    (lambda b: b.set(0, kind="rnn"), "unknown layer kind 'rnn'"),
    (lambda b: b.set(0, name="h2", units=-1), "units must be an integer >= 1; got -1"),
    (lambda b: b.set(0, kind="dropout", rate=2), r"layer 'dense_1' \(Dropout\): rate must"),
    (lambda b: b.load_preset("resnet"), "name must be one of"),
    (lambda b: b.compile(momentum=0.9), "unknown option 'momentum'"),
])
def test_malformed_calls_raise_value_errors_naming_the_argument(call, match):
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    b.add("dense", units=3)
    before = b.spec
    with pytest.raises(ValueError, match=match):
        call(b)
    assert b.spec == before and not b.errors


def test_a_bad_compile_setting_is_shown_not_raised_from_the_button():
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    b.device.options = ["cpu", "tpu"]
    b.device.value = "tpu"
    b.compile_button.click()
    assert "device must be one of" in b.status.value and b.model is None


# ----------------------------------------------------------------- compile and train
def test_compile_opens_a_dashboard_that_trains_and_recompiling_keeps_the_runs(digits):
    (x, y), (tx, ty) = digits
    b = ModelBuilder((x, y), validation_data=(tx, ty), epochs=2, batch_size=256)
    b.load_preset("mlp")
    b.compile_button.click()
    first = b.model
    assert first is not None and b.dashboard is not None and b.dashboard_box.children == (
        b.dashboard,)
    assert first.spec == b.spec and "compiled (run 1)" in b.status.value
    b.dashboard.start()
    assert b.dashboard.wait(60)
    assert len(first.history) == 2 and "val_accuracy" in first.history
    b.remove(1)  # without the first dropout
    assert "recompile to apply" in b.status.value and b.out_of_date
    second = b.compile(learning_rate=3e-3, seed=1)
    assert b.learning_rate.value == pytest.approx(3e-3) and second.learning_rate == 3e-3
    assert b.runs == [(first.spec, first), (b.spec, second)]
    assert len(b.runs[0][1].history) == 2 and b.dashboard.model is second
    b.dashboard.start()
    assert b.dashboard.wait(60) and len(second.history) == 2
    runs = b.runs_frame()
    assert runs["run"].tolist() == [1, 2] and runs["epochs"].tolist() == [2, 2]
    assert runs["params"].tolist() == [first.count_params(), second.count_params()]
    assert runs["val_accuracy"].tolist() == pytest.approx(
        [first.history["val_accuracy"].iloc[-1], second.history["val_accuracy"].iloc[-1]])
    assert runs["layers"][0] == "Dense → Dropout → Dense → Dropout → Dense"
    assert "earlier runs" in b.runs_html.value and "val_accuracy" in b.runs_html.value


def test_without_data_compile_makes_a_model_and_no_dashboard():
    b = ModelBuilder(input_shape=(None, 4), output_units=1, loss="mse")
    b.add("dense", units=3, activation="relu")
    model = b.compile(optimizer="sgd")
    assert b.dashboard is None and model.optimizer == "sgd" and b.optimizer.value == "sgd"
    assert model.count_params() == 4 * 3 + 3 + 3 + 1


@pytest.mark.parametrize("units, words", [
    (10**9, ("'hidden' (Dense) has 1,000,000,000 values per sample", "16,777,216 (MAX_UNITS)")),
    # wide enough for MAX_PARAMS, within MAX_UNITS: 64 * 5,000,000 weights
    (5_000_000, ("325,000,000 parameters", "300,000,000 (MAX_PARAMS)")),
])
def test_units_past_the_spec_limits_are_marked_before_compile(units, words):
    """units = 1,000,000,000 is refused in the row with the limit, Compile stays off and the
    parameter count is not the too-big one; nothing is allocated."""
    b = ModelBuilder(input_shape=(None, 64), output_units=10, loss="cross_entropy")
    b.add("dense", units=32, activation="relu", name="hidden")
    valid = b.spec
    option(b, 0, "units").value = units
    assert_marked(b, 0, *words, valid=valid)
    assert f"{units * 64 + units:,}" not in b.params.value
    with pytest.raises(ValueError, match="fix the stack before compiling"):
        b.compile()
    option(b, 0, "units").value = 32
    assert not b.errors and not b.compile_button.disabled


def test_units_typed_with_a_dot_are_refused_not_read_as_another_number():
    """The units field takes "12.7" as 12.7 (an IntText dropped the dot: 127) and marks the
    row; a whole number typed as 12.0 is 12."""
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    b.add("dense", units=8, name="hidden")
    valid = b.spec
    field = option(b, 0, "units")
    assert isinstance(field.value, (int, float)) and field.__class__.__name__ != "IntText"
    field.value = 12.7
    assert_marked(b, 0, "'hidden'", "units must be an integer >= 1; got 12.7", valid=valid)
    field.value = 12.0
    assert not b.errors and b.spec.layers[0].options["units"] == 12


def test_row_buttons_say_what_they_do():
    b = ModelBuilder(input_shape=(None, 4), output_units=2)
    b.add("dense", units=8)
    tips = {css: button(b, 0, css).tooltip
            for css in ("xb-builder-up", "xb-builder-down", "xb-builder-delete")}
    assert tips == {"xb-builder-up": "move layer up", "xb-builder-down": "move layer down",
                    "xb-builder-delete": "remove layer"}
