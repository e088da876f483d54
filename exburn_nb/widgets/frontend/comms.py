"""Let controls act while a cell blocks: their widget messages run on a kernel subshell.

A cell that blocks (``dash.wait()``, a blocking ``xb.fit``) holds the kernel's main shell,
so a click handled there waits until the cell ends. ipykernel >= 7 runs *subshells*
(threads of their own), and from 7.4 asks each comm where to handle a message it
receives; :func:`serve_on_subshell` answers, for the given widgets:

- the front end's subshell when it sent on one (JupyterLab >= 4.4, Notebook >= 7.4,
  Voilà 0.5) — ipykernel would otherwise pick the shell the widget last sent from, often
  the busy main shell;
- otherwise (VS Code, JupyterLab < 4.4, Notebook 6) a subshell the kernel creates for
  itself once, by asking its own control channel as a front end would.

Elsewhere clicks wait until the cell ends: with ipykernel 6, with ipykernel 7.0-7.3 and a
front end without subshells (no routing hook to answer), and in kernels that are not
ipykernel (Colab's own). The widgets' handlers must be thread-safe (the dashboard's only
set flags and trait values).

Example:
    >>> serve_on_subshell(stop_button, pause_button)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from .borrowed import can_route_comm_messages, kernel_has_subshells, route_comm_messages

log = logging.getLogger(__name__)

SUBSHELL_REPLY_TIMEOUT_S = 2.0  # the control thread answers even while a cell runs
_creating = threading.Lock()


def serve_on_subshell(*widgets: Any) -> None:
    """Handle these widgets' messages on a subshell, so they act while a cell blocks.

    Does nothing outside an ipykernel >= 7.4 (plain Python, tests, other kernels).

    Example:
        >>> serve_on_subshell(stop_button, pause_button)  # doctest: +SKIP
    """
    comms = [comm for comm in (getattr(w, "comm", None) for w in widgets)
             if can_route_comm_messages(comm)]
    if not comms:
        return  # no routing hook (ipykernel < 7.4, other kernels, plain Python)
    route = functools.partial(_subshell_for, _kernel_subshell())
    for comm in comms:
        route_comm_messages(comm, route)


def _subshell_for(own_subshell: str | None, data: Any,
                  front_end_subshell: str | None) -> str | None:
    """Where the kernel handles a message for a served comm (None: the main shell)."""
    return front_end_subshell if front_end_subshell is not None else own_subshell


def _kernel_subshell() -> str | None:
    """This kernel's own subshell, created on first use; None where there can be none."""
    if not kernel_has_subshells():
        return None  # not in a kernel, or one without subshells
    from ipykernel.connect import get_connection_file

    try:
        connection_file = get_connection_file()
    except (RuntimeError, OSError):
        log.debug("no connection file: widget messages stay on the main shell", exc_info=True)
        return None
    with _creating:
        return _create_subshell(connection_file)


@functools.cache
def _create_subshell(connection_file: str) -> str | None:
    """Ask the kernel behind ``connection_file`` for a new subshell; None if that fails."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=connection_file)
    try:
        client.load_connection_file()
        client.control_channel.send(client.session.msg("create_subshell_request", {}))
        reply = client.control_channel.get_msg(timeout=SUBSHELL_REPLY_TIMEOUT_S)
        return reply["content"]["subshell_id"]
    except Exception:  # no reply, a refusal: the main shell handles the messages, as before
        log.debug("could not create a kernel subshell for widget messages", exc_info=True)
        return None
    finally:
        client.context.destroy(linger=0)  # the client's own context, with its control socket
