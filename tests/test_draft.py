"""The builder's draft without any widget: checked edits, edits as typed, the reason per
bad row, and compile (the widget's own tests are in tests/widgets/test_builder.py)."""

import pytest

import exburn_nb as xb
from exburn_nb.core.draft import DRAFT_COMPILE_OPTIONS, Draft, check_compile_options


def test_a_bad_row_is_kept_marked_and_the_spec_stays_the_last_good_one():
    d = Draft(input_shape=(None, 4), output_units=2)
    d.add("dense", units=3, activation="relu")
    good = d.spec
    d.set_option(0, "units", -1)
    assert d.spec == good and [i for i, _ in d.errors] == [0]
    assert "units must be an integer >= 1; got -1" in d.errors[0][1]
    assert d.shapes == [None, None] and d.preview.layers == ()
    with pytest.raises(ValueError, match="fix the stack before compiling"):
        d.compile()
    d.set_option(0, "units", 5)
    assert not d.errors and d.spec.layers[0].options["units"] == 5
    assert d.shapes == [(None, 5), (None, 2)]


def test_a_taken_name_marks_the_later_row():
    d = Draft(input_shape=(None, 4), output_units=2)
    d.add("dense", units=3)
    d.add("dense", units=3)
    d.rename(1, d.rows[0].name)
    assert [i for i, _ in d.errors] == [1] and "already used by layer 0" in d.errors[0][1]


def test_compile_takes_the_draft_spec_and_refuses_unknown_options():
    d = Draft(input_shape=(None, 4), output_units=3, loss="mse")
    d.load_preset("mlp")
    model = d.compile(optimizer="sgd", seed=0)
    reference = xb.compile(d.spec, loss="mse", optimizer="sgd", seed=0)
    assert model.spec == d.spec and model.loss_function == "mse"
    assert model.count_params() == reference.count_params()
    with pytest.raises(ValueError, match="unknown option 'momentum'"):
        check_compile_options({"momentum": 0.9})
    assert "input_shape" not in DRAFT_COMPILE_OPTIONS and "seed" in DRAFT_COMPILE_OPTIONS


def test_data_sizes_the_output_and_picks_the_loss(digits):
    (x, y), _ = digits
    d = Draft((x, y))
    assert d.input_shape == (None, 64) and d.output.options["units"] == 10
    assert d.loss == "cross_entropy" and '.dense(10, name="output")' in d.code
    assert "Total params" in d.summary()
