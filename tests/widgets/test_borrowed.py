"""The private names of other libraries that exburn_nb borrows still exist, with the shape
it relies on, in the installed versions; when an upgrade moves one, the failure names the
library, its version and the attribute. And a figure that keeps changing while its state
is copied keeps its saved state instead of failing."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from exburn_nb.widgets.frontend import borrowed
from exburn_nb.widgets.frontend.figure import FigureWidget


@pytest.mark.parametrize("item", borrowed.BORROWED, ids=lambda b: f"{b.library}:{b.attribute}")
def test_each_borrowed_internal_is_still_there(item):
    pytest.importorskip(item.library)
    try:
        item.check()
    except (AssertionError, AttributeError, ImportError, TypeError, ValueError) as exc:
        pytest.fail(f"{item.library} {version(item.library)} moved {item.attribute} "
                    f"({exc or type(exc).__name__}); exburn_nb uses it for: {item.purpose}. "
                    "Adapt exburn_nb/widgets/frontend/borrowed.py, or bound the version in "
                    "pyproject.toml.", pytrace=False)


def test_every_borrowed_library_is_bounded_in_pyproject():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for library in {b.library for b in borrowed.BORROWED}:
        assert f'"{library}>=' in text and "<" in text.split(f'"{library}>=', 1)[1].split('"')[0], \
            f"pyproject.toml: give {library} an upper bound (its private names are borrowed)"


def test_a_figure_changing_during_every_copy_keeps_its_saved_state(monkeypatch):
    fig = FigureWidget()
    fig.add_scatter(y=[1, 2])
    assert fig.save_state(send=False) and list(fig._widget_data[0]["y"]) == [1, 2]
    fig.data[0].y = [5, 6, 7]
    calls = []

    def always_changing(_value, _memo=None):
        calls.append(1)
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(borrowed.copy, "deepcopy", always_changing)
    assert fig.save_state(send=True) is False  # no UnboundLocalError
    assert len(calls) == borrowed.COPY_ATTEMPTS
    assert list(fig._widget_data[0]["y"]) == [1, 2]  # the state saved before


def test_routing_needs_the_kernels_hook():
    class Comm:  # ipykernel >= 7.4's comms have the hook
        def _reply_subshell_for(self, data, default):
            return default

    comm = Comm()
    assert borrowed.route_comm_messages(comm, lambda data, default: "mine")
    assert comm._reply_subshell_for({}, None) == "mine"
    assert not borrowed.route_comm_messages(object(), lambda data, default: "mine")
