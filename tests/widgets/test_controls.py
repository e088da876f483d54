"""The shared learning-rate slider: any rate is held exactly, on the slider's own steps."""

import math

from hypothesis import given
from hypothesis import strategies as st

from exburn_nb.widgets.controls import LR_STEP, learning_rate_slider, moved_off, show_rate


@given(st.floats(min_value=1e-12, max_value=1e12))
def test_a_rate_lies_on_the_steps_a_browser_snaps_the_slider_to(lr):
    slider = learning_rate_slider(1e-3)
    show_rate(slider, lr)
    assert slider.value == lr
    k = (math.log10(lr) - slider.min) / slider.step
    assert abs(k - round(k)) < 1e-6  # 3e-3 must not come back as 10 ** -2.5 = 3.16e-3
    assert 0 < slider.step <= 1.5 * LR_STEP  # about as fine as before
    assert not moved_off(slider, lr)
    snapped = 10 ** (slider.min + round(k) * slider.step)  # what the browser sends back
    assert not moved_off(slider, snapped) and f"{snapped:.2e}" == f"{lr:.2e}"
