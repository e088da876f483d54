"""Run directories: the files through which a run is watched from elsewhere.

A run directory holds one run (one ``fit`` call, resumed or not):

- ``run.json``: the header, rewritten atomically at the run's start and end: the format,
  the run's ``uid``, its config, how many epochs and batches it will train (so a watcher
  can show progress), and its ``status`` (``running``, then ``finished``, ``stopped``,
  ``pruned`` or ``failed``);
- ``history.jsonl``: the run's rows, appended as it goes, one JSON object a line:
  ``{"batch": {...}}`` for a batch row and ``{"epoch": {...}}`` for an epoch row, with the
  history's columns (a non-finite value is written as ``null``);
- ``STOP``: created by anyone (``touch run_dir/STOP``, :func:`request_stop`), it asks the
  run to stop at the end of the batch in progress.

Rows are flushed to the operating system as they are written, and nothing is fsynced
(a watcher needs the rows soon, not a disk that survives a power cut). A writer
killed mid-line leaves a half line at the end of the file: readers (:class:`RowTail`)
take only complete lines, and the run, resumed, cuts the half line before it appends.
Reading never executes anything: JSON only, parsed with bounded nesting.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "run"
    >>> claim(d, "9f2c4e1a0b7d3366") is None  # a new directory: no header yet
    True
    >>> write_header(d, {"uid": "9f2c4e1a0b7d3366", "status": "running"})
    >>> with RowWriter(d) as w:
    ...     w.write([{"epoch": {"epoch": 1, "loss": 0.5}}])
    >>> RowTail(d).read()
    [{'epoch': {'epoch': 1, 'loss': 0.5}}]
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from .persist import parse_json, pid_alive, write_bytes

FORMAT = "exburn_nb.run/1"
HEADER_FILE = "run.json"
ROWS_FILE = "history.jsonl"
STOP_FILE = "STOP"
ROW_KINDS = ("batch", "epoch")


def check_run_dir(path: Any, argname: str = "run_dir") -> Path:
    """``path`` as a ``Path``, or a ``ValueError`` naming ``argname`` unless it is a
    non-empty ``str`` or ``os.PathLike`` that is not a file.

    Example:
        >>> check_run_dir("runs/mlp")
        PosixPath('runs/mlp')
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{argname} must be a directory path (str or Path); got {path!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{argname} {str(path)!r} is a file; a run directory must be a "
                         "directory")
    return path


def read_header(run_dir: str | Path) -> dict | None:
    """The header (``run.json``) of ``run_dir``; None while there is none (the run has
    not started). A ``ValueError`` naming the file when it is not one.

    Example:
        >>> read_header("no/such/run") is None
        True
    """
    path = Path(run_dir) / HEADER_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    header = parse_json(raw, f"run header {str(path)!r}")
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(
            header.get("uid"), str):
        raise ValueError(f"run header {str(path)!r} is not a run header of format {FORMAT!r} "
                         "with a string uid")
    return header


def writer_gone(header: dict) -> bool:
    """Whether the process that wrote ``header`` (``host``, ``pid``) is known to be gone:
    it ran on this host and no longer runs. False when unsure (another host).

    Example:
        >>> writer_gone({"host": socket.gethostname(), "pid": os.getpid()})
        False
    """
    pid = header.get("pid")
    return (header.get("host") == socket.gethostname() and isinstance(pid, int)
            and not isinstance(pid, bool) and not pid_alive(pid))


def write_header(run_dir: str | Path, header: dict) -> None:
    """Write ``header`` (JSON values) as ``run_dir/run.json``, atomically; the directory
    is made when missing. ``format`` is set here."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(run_dir / HEADER_FILE,
                json.dumps({"format": FORMAT, **header}, indent=1).encode(), durable=False)


def claim(run_dir: str | Path, uid: str | None) -> dict | None:
    """Check that run ``uid`` may write ``run_dir``: the directory is new, empty of runs,
    or holds this run's own files (a resumed run goes on there). Returns the existing
    header (None when there is none); a ``ValueError`` naming the directory when it
    holds another run's, as checkpoint directories do. Changes nothing.

    Example:
        >>> claim("no/such/run", "9f2c4e1a0b7d3366") is None
        True
    """
    run_dir = check_run_dir(run_dir)
    header = read_header(run_dir)
    if header is not None and header["uid"] != uid:
        raise ValueError(f"run_dir {str(run_dir)!r} holds another run (uid {header['uid']}, "
                         f"{header.get('status', 'unknown status')}); a run directory "
                         "belongs to one run: give this run another run_dir, or remove "
                         "that directory")
    if header is None and (run_dir / ROWS_FILE).exists():
        raise ValueError(f"run_dir {str(run_dir)!r} holds a {ROWS_FILE} without a "
                         f"{HEADER_FILE}; give this run another run_dir, or remove it")
    return header


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RowWriter:
    """Appends rows to ``run_dir/history.jsonl``: one line each, flushed per
    :meth:`write` call (to the operating system; no fsync). A half line a killed writer
    left at the end is cut first, so the file stays whole lines; ``replace_with`` starts
    the file anew with those rows (atomically: readers see the old file or the new one).

    Example:
        >>> writer = RowWriter(run_dir)  # doctest: +SKIP
        >>> writer.write([{"batch": {"epoch": 1, "batch": 1, "loss": 0.7}}]); writer.close()  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path, replace_with: list[dict] | None = None):
        self.path = Path(run_dir) / ROWS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if replace_with is not None and self.path.exists():  # a new file, a new inode:
            write_bytes(self.path, _lines(replace_with).encode(), durable=False)  # readers
            replace_with = None  # start over
        elif self.path.exists():
            _cut_half_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.write(replace_with or [])

    def write(self, rows: list[dict]) -> None:
        """Append ``rows`` (``{"batch": row}`` / ``{"epoch": row}``) and flush."""
        if rows:
            self._file.write(_lines(rows))
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)


def _cut_half_line(path: Path) -> None:
    """Truncate ``path`` after its last newline (a killed writer's half line)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if not size:
            return
        f.seek(max(0, size - 65536))
        tail = f.read()
        end = tail.rfind(b"\n")
        keep = size - len(tail) + end + 1 if end >= 0 else 0
        if keep < size and (end >= 0 or size <= 65536):
            f.truncate(keep)


class RowTail:
    """Reads the rows of ``run_dir/history.jsonl`` as they are appended: each
    :meth:`read` returns the complete lines written since the last one (a half line at the
    end waits for its newline). When the file is replaced (a resumed run rewrites it)
    :attr:`restarted` is set and reading starts over from its first line.

    Example:
        >>> tail = RowTail("runs/mlp")  # doctest: +SKIP
        >>> tail.read()  # doctest: +SKIP
        [{'batch': {'run': 1, 'epoch': 1, 'batch': 1, 'step': 1, 'loss': 2.3, 'lr': 0.001}}]
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ROWS_FILE
        self.offset = self.line = 0
        self.restarted = False
        self._inode: int | None = None

    def read(self) -> list[dict]:
        """The rows appended since the last call; a ``ValueError`` naming the file and
        line for a complete line that is not a row."""
        try:
            with open(self.path, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                if self._inode not in (None, inode) or f.seek(0, os.SEEK_END) < self.offset:
                    self.offset = self.line = 0
                    self.restarted = True
                self._inode = inode
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for raw in data[:end + 1].splitlines():
            self.line += 1
            if not raw.strip():
                continue
            row = parse_json(raw, f"{str(self.path)!r} line {self.line}")
            if (not isinstance(row, dict) or len(row) != 1 or next(iter(row)) not in ROW_KINDS
                    or not isinstance(next(iter(row.values())), dict)):
                raise ValueError(f"{str(self.path)!r} line {self.line} is not a row "
                                 f"({{\"batch\": {{...}}}} or {{\"epoch\": {{...}}}}): "
                                 f"{raw[:80]!r}")
            rows.append(row)
        return rows


def request_stop(run_dir: str | Path) -> Path:
    """Ask the run writing ``run_dir`` to stop at the end of its batch in progress (what
    ``touch run_dir/STOP`` does); the path of the stop file.

    Example:
        >>> request_stop("runs/mlp")  # doctest: +SKIP
        PosixPath('runs/mlp/STOP')
    """
    path = check_run_dir(run_dir) / STOP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def stop_requested(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a stop file (one ``stat``: cheap enough per batch)."""
    return os.path.exists(os.path.join(run_dir, STOP_FILE))


def clear_stop(run_dir: str | Path) -> None:
    """Remove the stop file (a resumed run's: it was meant for the part that stopped)."""
    (Path(run_dir) / STOP_FILE).unlink(missing_ok=True)
