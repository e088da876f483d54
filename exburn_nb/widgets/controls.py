"""What every widget shows the same way: a learning-rate slider whose range holds the
model's rate (never clamped to it), and a message as escaped HTML.

Example:
    >>> slider = learning_rate_slider(1e-6)
    >>> slider.value, slider.min
    (1e-06, -6.0)
    >>> error_html(ValueError("<img src=x>"))
    "<div style='color:#c00'><b>ValueError: &lt;img src=x&gt;</b></div>"
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as W

LR_EXPONENTS = (-5, 0)  # the slider's range (powers of ten) unless a rate lies outside
LR_STEP = 0.1


def learning_rate_slider(value: float, **options: Any) -> W.FloatLogSlider:
    """A log slider over ``1e-5 .. 1`` widened to whole powers of ten that hold ``value``,
    showing ``value`` exactly (a slider clamps what lies outside its range).

    Example:
        >>> learning_rate_slider(30.0).max
        2.0
    """
    slider = W.FloatLogSlider(base=10, min=LR_EXPONENTS[0], max=LR_EXPONENTS[1], step=LR_STEP,
                              description="learning rate", readout_format=".2e", **options)
    show_rate(slider, value)
    return slider


def show_rate(slider: W.FloatLogSlider, value: float) -> None:
    """Set ``slider`` to ``value``, first widening its range to whole powers of ten that
    hold it and spacing its steps (about :data:`LR_STEP`) so that ``value`` lies on them:
    a browser snaps a slider to its steps, and 3e-3 would read 3.16e-3.

    Example:
        >>> slider = learning_rate_slider(1e-3)
        >>> show_rate(slider, 2e-7); slider.value, slider.min
        (2e-07, -7.0)
        >>> show_rate(slider, 3e-3); round((math.log10(3e-3) - slider.min) / slider.step, 9)
        45.0
    """
    exponent = math.log10(value)
    slider.min = min(slider.min, math.floor(exponent))
    slider.max = max(slider.max, math.ceil(exponent))
    span = exponent - slider.min  # >= 0: the value's distance from the range's start
    slider.step = span / max(1, round(span / LR_STEP)) if span else LR_STEP
    slider.value = value


def moved_off(slider: W.FloatLogSlider, rate: float) -> bool:
    """Whether ``slider`` says another rate than ``rate``: by more than half a step, since
    a browser snaps the slider to its grid (2e-4 comes back as ``10**-3.7``) and that
    rounding is no person's choice.

    Example:
        >>> slider = learning_rate_slider(2e-4)
        >>> slider.value = 10 ** -3.7
        >>> moved_off(slider, 2e-4), moved_off(slider, 1e-3)
        (False, True)
    """
    return abs(math.log10(slider.value) - math.log10(rate)) >= slider.step / 2


def error_html(error: BaseException | str, traceback: str | None = None) -> str:
    """``error`` (an exception, shown with its type, or a message) as red HTML, its text
    escaped (so ``<img onerror=...>`` in a message is shown, never run), with ``traceback``
    folded under it.

    Example:
        >>> error_html("a < b")
        "<div style='color:#c00'><b>a &lt; b</b></div>"
    """
    message = html.escape(f"{type(error).__name__}: {error}" if isinstance(error, BaseException)
                          else str(error))
    details = (f"<details><summary>traceback</summary><pre>{html.escape(traceback)}</pre>"
               "</details>" if traceback else "")
    return f"<div style='color:#c00'><b>{message}</b>{details}</div>"
