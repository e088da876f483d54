"""Files: tensors as safetensors, everything else as JSON in the safetensors header.

Nothing here unpickles or evaluates anything: a file is a length-prefixed JSON header
followed by raw tensor bytes, so loading a hostile file can fail but never run code.
Writes are atomic (a temp file in the same folder, fsync, then ``os.replace``), so a
crash or kill mid-write leaves the old file intact.

Format ``exburn_nb/2``: a plain safetensors file whose header metadata has one key,
``"exburn_nb"``, a JSON object: ``{"format": "exburn_nb/2", ...the metadata...,
"sha256": hex}``. The SHA-256 covers ``json.dumps`` of that object without ``sha256``
and every tensor's name, dtype, shape and bytes (:func:`_digest`), so a changed byte
anywhere is caught, never applied. The same content always gives the same bytes. Model
files lay their contents out as :class:`ModelFile` says; :mod:`exburn_nb.io.filecheck`
checks every value before a model loads any.

Example:
    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.exburn")
    >>> write_file(path, {"w": torch.ones(2)}, {"kind": "demo"})
    >>> tensors, meta = read_file(path)
    >>> meta["kind"], tensors["w"].tolist()
    ('demo', [1.0, 1.0])
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

from .filecheck import check_compile, check_frozen, check_history

FORMAT = "exburn_nb/2"
_META_KEY = "exburn_nb"
_SUM_KEY = "sha256"  # the last key of the metadata object
MAX_HEADER_BYTES = 16 * 2**20  # the JSON header (metadata, history rows, tensor index)
MAX_NESTING = 64  # how deep JSON lists and objects may nest in a header
# a JSON string, or an unterminated one up to the end: a match never fails once it starts
# at a quote, so stripping strings stays linear on hostile input
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def _digest(meta_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata text and every tensor's name, dtype, shape and bytes.

    ``meta_text`` is ``json.dumps`` of the metadata without its checksum: the reader
    re-serialises what it parsed, so the checksum covers every value it will use.
    """
    h = hashlib.sha256()
    h.update(f"{FORMAT}|{len(meta_text)}|".encode())
    h.update(meta_text.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"|{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def check_nesting(raw: bytes, what: str) -> None:
    """Raise a ``ValueError`` if the JSON text ``raw`` nests deeper than :data:`MAX_NESTING`
    (counted without recursion, so any depth is safe to check)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return  # too few brackets to nest too deep
    codes = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    depth = np.cumsum((codes == ord("[")) | (codes == ord("{")), dtype=np.int64) - np.cumsum(
        (codes == ord("]")) | (codes == ord("}")), dtype=np.int64)
    if depth.size and depth.max() > MAX_NESTING:
        raise ValueError(f"{what} nests lists or objects {int(depth.max())} deep; at most "
                         f"{MAX_NESTING} levels are allowed (MAX_NESTING)")


def parse_json(text: bytes | str, what: str) -> object:
    """``json.loads`` for untrusted text: nesting bounded by :data:`MAX_NESTING`, no NaN.

    Raises ``ValueError`` naming ``what`` (never ``RecursionError``).
    """
    raw = text.encode() if isinstance(text, str) else bytes(text)
    check_nesting(raw, what)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None


def to_bytes(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """Serialise tensors and JSON-ready metadata (with a checksum) into one safetensors blob.

    ``tensors`` must not change while this runs (clone them under the writer's lock).
    """
    payload, storages = {}, set()
    for key, value in tensors.items():
        t = value.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in storages:  # safetensors refuses shared memory
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        payload[key] = t
    if _SUM_KEY in meta:
        raise ValueError(f"meta key {_SUM_KEY!r} is reserved for the checksum")
    body = {"format": FORMAT, **meta}
    try:
        text = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:  # a NaN, or an object JSON can't hold
        raise ValueError(f"the metadata must be plain JSON data with finite numbers: {exc}"
                         ) from None
    check_nesting(text.encode(), "the metadata")
    text = json.dumps({**body, _SUM_KEY: _digest(text, payload)}, allow_nan=False)
    blob = _save_tensors(payload, metadata={_META_KEY: text})  # one key: a stable order
    header = struct.unpack("<Q", blob[:8])[0]
    if header > MAX_HEADER_BYTES:
        raise ValueError(f"the file's header would be {header:,} bytes, over the limit of "
                         f"{MAX_HEADER_BYTES:,} (MAX_HEADER_BYTES); keep large data in tensors")
    return blob


def _header_meta(header: bytes, bad: Callable[[str], ValueError]) -> tuple[dict, str | None]:
    """The metadata object in a file's JSON ``header`` and its stored checksum (popped);
    ``bad(why)`` makes the error."""
    try:
        stored = parse_json(header, "its header")["__metadata__"]
        text = stored[_META_KEY]
    except (KeyError, TypeError):
        raise bad("its header is not an exburn_nb header (corrupted or another format)") from None
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(text, str):
        raise bad("its header is not an exburn_nb header (corrupted or another format)")
    try:
        meta = parse_json(text, "its metadata")
    except ValueError as exc:
        raise bad(str(exc)) from None
    checksum = meta.pop(_SUM_KEY, None) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise bad(f"unknown format {found!r:.80}; expected {FORMAT!r}")
    return meta, checksum


def from_bytes(data: bytes, source: str = "<bytes>") -> tuple[dict[str, torch.Tensor], dict]:
    """Parse a blob written by :func:`to_bytes`; a ``ValueError`` naming ``source`` otherwise."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{source} is not a readable exburn_nb file: {why}")

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{source}: expected bytes; got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 8:
        raise bad(f"it is only {len(data)} bytes long (truncated or empty)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        kind = " (it looks like a pickle, which is never loaded)" if data[:1] == b"\x80" else ""
        raise bad(f"its header claims {size} bytes but the file has {len(data) - 8}: "
                  f"truncated, corrupted or another format{kind}")
    if size > MAX_HEADER_BYTES:
        raise bad(f"its header is {size:,} bytes, over the limit of {MAX_HEADER_BYTES:,} "
                  "(MAX_HEADER_BYTES)")
    meta, checksum = _header_meta(data[8:8 + size], bad)
    try:
        tensors = _load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise bad(f"its tensor data is damaged ({exc})") from None
    if checksum != _digest(json.dumps(meta), tensors):
        raise bad("its contents do not match its checksum (corrupted or edited)")
    return tensors, meta


def write_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and ``meta`` atomically (see :func:`write_bytes`)."""
    check_file_path(path, "model.exburn")
    write_bytes(path, to_bytes(tensors, meta))


def check_file_path(path: str | os.PathLike, example: str) -> Path:
    """``path`` as a ``Path``; a ``ValueError`` naming it when it is a directory or its
    folder does not exist (``example``: a file name the message suggests)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name such as "
                         f"{str(path / example)!r}")
    if not path.parent.exists():
        raise ValueError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def write_bytes(path: str | os.PathLike, blob: bytes, durable: bool = True) -> None:
    """Write ``blob`` atomically: the file at ``path`` is either the old one or the
    complete new one (a temp file in the same folder, fsync, then ``os.replace``). Check
    the path first with :func:`check_file_path`. ``durable=False`` skips the fsyncs: still
    atomic for readers, but a power cut may lose it (for files rewritten often).

    The temp file ``.NAME.<host>-<pid>.<random>.tmp`` names its writer (``host``: a short
    hash of the host name), so temp files left by writers on this host that died
    mid-save are removed by the next save to ``path``. The file gets
    the permissions of any new file here (``0o666`` less the umask).

    Example:
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> write_bytes(path, b"hello"); open(path, "rb").read()
        b'hello'
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def temp_beside(path: str | os.PathLike) -> Path:
    """A new empty temp file in ``path``'s folder, to be written and then moved onto
    ``path`` (or removed): named ``.NAME.<host>-<pid>.<random>.tmp`` for its writer, so a
    later call removes what writers of ``path`` that died left behind
    (:func:`remove_orphans`).

    Example:
        >>> tmp = temp_beside(os.path.join(tempfile.mkdtemp(), "runs.csv"))
        >>> tmp.name.startswith(".runs.csv.") and tmp.suffix == ".tmp"
        True
    """
    path = Path(path)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphans(path: Path) -> list[Path]:
    """Remove the temp files that writers of ``path`` left when they died; return them.

    A temp file is an orphan when it was made on this host and the process id in its
    name is not running; temp files of live writers (this process's included) and of
    other hosts sharing the folder are never touched.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_HOST}-(\d{{1,10}})\.[^.]+\.tmp")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}-*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match and int(match[1]) != os.getpid() and not pid_alive(int(match[1])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (True when unsure: then nothing is removed)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


_UMASK_LOCK = threading.Lock()
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _umask() -> int:
    """This process's umask (read from /proc where it can be, so it never changes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`write_file` (``ValueError`` naming the file if it can't)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at path {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    return from_bytes(path.read_bytes(), source=f"file {str(path)!r}")


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata of the file at ``path``, read from its header alone: a quick look
    that skips the tensors and so is NOT checked against the checksum (use
    :func:`read_file` before relying on a value).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "m.exburn")
        >>> write_file(path, {"w": torch.ones(2)}, {"kind": "demo"})
        >>> read_meta(path)["kind"]
        'demo'
    """
    source = f"file {str(path)!r}"

    def bad(why: str) -> ValueError:
        return ValueError(f"{source} is not a readable exburn_nb file: {why}")

    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise bad(f"it is only {len(prefix)} bytes long (truncated or empty)")
        (size,) = struct.unpack("<Q", prefix)
        if size > MAX_HEADER_BYTES:
            raise bad(f"its header is {size:,} bytes, over the limit of {MAX_HEADER_BYTES:,} "
                      "(MAX_HEADER_BYTES)")
        header = f.read(size)
    if len(header) < size:
        raise bad(f"its header claims {size} bytes but the file is shorter (truncated)")
    return _header_meta(header, bad)[0]


# --------------------------------------------------------------------- the model file layout
MAX_LAYERS = 10_000  # layers a spec in a file may declare
PARAMS_ONLY = ("holds parameters only: load them into a compiled model with "
               "model.load_params(xb.deserialize_params(data))")


@dataclass
class ModelFile:
    """What a model file holds, as tensors and plain JSON-ready values.

    Tensors are stored as ``param.<name>`` (the module's state dict), ``optim.<i>.<key>``
    (the optimizer's per-parameter state; non-tensor values go to the metadata),
    ``batch.<column>`` (the batch history, float64) and ``extra.<name>``; everything else
    is JSON metadata. ``extra`` is an optional ``(meta, tensors)`` pair that loaders of
    models ignore (training checkpoints keep their resume state there).
    """

    params: dict[str, torch.Tensor]
    compile: dict
    spec: dict | None = None
    module_class: str = ""
    frozen: list[str] = field(default_factory=list)
    optimizer_groups: list[dict] = field(default_factory=list)
    optimizer_state: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: dict = field(default_factory=lambda: {"epochs": [], "batches": {}})
    extra: tuple[dict, dict[str, torch.Tensor]] | None = None


@contextmanager
def damaged_file_errors(source: str) -> Iterator[None]:
    """Turn any error from interpreting a file's contents into a ``ValueError`` naming it."""
    try:
        yield
    except ValueError as exc:
        if source in str(exc):
            raise
        raise ValueError(f"{source} is damaged: {exc}") from None
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError,
            RuntimeError) as exc:
        raise ValueError(f"{source} is damaged: {type(exc).__name__}: {exc}") from None


def check_extra(extra: Any) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """``extra`` for :func:`write_model`: None or ``(meta: dict, tensors: dict[str, Tensor])``."""
    if extra is None:
        return None
    if (not isinstance(extra, tuple) or len(extra) != 2 or not isinstance(extra[0], dict)
            or not isinstance(extra[1], dict)
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                       for k, v in extra[1].items())):
        raise ValueError("extra must be None or a pair (meta: dict, tensors: dict of str -> "
                         f"torch.Tensor); got {extra!r:.200}")
    try:
        json.dumps(extra[0], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra's meta must be plain JSON data (finite numbers): {exc}") from None
    return extra


def model_payload(model_file: ModelFile) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata that :func:`write_model` stores for ``model_file``."""
    mf = model_file
    tensors = {f"param.{k}": v for k, v in mf.params.items()}
    scalars: dict[str, dict] = {}
    for idx, state in mf.optimizer_state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    for column, values in mf.history["batches"].items():
        tensors[f"batch.{column}"] = torch.tensor(values, dtype=torch.float64)
    meta = {"spec": mf.spec, "module_class": mf.module_class, "compile": mf.compile,
            "frozen": list(mf.frozen), "optimizer_groups": mf.optimizer_groups,
            "optimizer_scalars": scalars, "history": mf.history["epochs"],
            "runs": mf.history.get("runs", [])}
    if mf.extra is not None:
        extra_meta, extra_tensors = check_extra(mf.extra)
        meta["extra"] = extra_meta
        tensors.update({f"extra.{k}": v for k, v in extra_tensors.items()})
    return tensors, meta


_PREFIXES = ("param.", "optim.", "batch.", "extra.")
_OPTIM_KEY = re.compile(r"optim\.(\d{1,9})\.(\w+)")


def parse_model(tensors: dict[str, torch.Tensor], meta: dict, source: str) -> ModelFile:
    """The :class:`ModelFile` in a file's contents, every value checked; a ``ValueError``
    naming ``source`` otherwise. Checks that need the model (shapes) are the loader's."""
    with damaged_file_errors(source):
        if meta.get("kind") == "params":
            raise ValueError(f"{source} {PARAMS_ONLY}")
        groups: dict[str, dict[str, torch.Tensor]] = {p: {} for p in _PREFIXES}
        for key, value in tensors.items():
            prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected tensor {key!r} (names start with "
                                 f"{', '.join(_PREFIXES)})")
            groups[prefix][key[len(prefix):]] = value
        state: dict[int, dict[str, Any]] = {}
        for key, value in groups["optim."].items():
            match = _OPTIM_KEY.fullmatch(f"optim.{key}")
            if match is None:
                raise ValueError(f"optimizer tensor 'optim.{key}' is not named optim.<index>.<key>")
            state.setdefault(int(match[1]), {})[match[2]] = value
        scalars = meta["optimizer_scalars"]
        if not isinstance(scalars, dict):
            raise ValueError(f"optimizer_scalars must be an object; got {scalars!r:.200}")
        for idx, values in scalars.items():
            if not (re.fullmatch(r"\d{1,9}", idx) and isinstance(values, dict)):
                raise ValueError(f"optimizer_scalars {idx!r} is not index -> object")
            state.setdefault(int(idx), {}).update(values)
        batches = {}
        for column, values in groups["batch."].items():
            if values.dtype != torch.float64 or values.dim() != 1:
                raise ValueError(f"batch history {column!r} must be a 1-d float64 tensor; got "
                                 f"{values.dtype} of shape {tuple(values.shape)}")
            batches[column] = values.tolist()
        batches.setdefault("run", [0.0] * len(batches.get("epoch", [])))  # before runs existed
        runs = meta.get("runs", [])
        check_history(meta["history"], batches, runs)
        for c in ("epoch", "batch", "step", "run"):
            batches[c] = [int(v) for v in batches[c]]
        spec = meta["spec"]
        if spec is not None:
            layers = spec.get("layers") if isinstance(spec, dict) else None
            if not isinstance(layers, list):
                raise ValueError(f"spec must be an object with a list of layers; got {spec!r:.200}")
            if len(layers) > MAX_LAYERS:
                raise ValueError(f"its spec declares {len(layers):,} layers, over the limit of "
                                 f"{MAX_LAYERS:,} (MAX_LAYERS)")
        if not isinstance(meta["module_class"], str):
            raise ValueError(f"module_class must be a string; got {meta['module_class']!r:.200}")
        if not isinstance(meta["optimizer_groups"], list):
            raise ValueError("optimizer_groups must be a list")
        extra = None
        if "extra" in meta:
            extra = check_extra((meta["extra"], groups["extra."]))
        return ModelFile(params=groups["param."], compile=check_compile(meta["compile"]),
                         spec=spec, module_class=meta["module_class"],
                         frozen=check_frozen(meta["frozen"]),
                         optimizer_groups=meta["optimizer_groups"], optimizer_state=state,
                         history={"epochs": meta["history"], "batches": batches, "runs": runs},
                         extra=extra)


def write_model(path: str | os.PathLike, model_file: ModelFile) -> Path:
    """Write ``model_file`` atomically to ``path``; returns the absolute path."""
    write_file(path, *model_payload(model_file))
    return Path(path).resolve()


def read_model(path: str | os.PathLike) -> ModelFile:
    """The checked :class:`ModelFile` at ``path`` (``ValueError`` naming it if it can't be)."""
    tensors, meta = read_file(path)
    return parse_model(tensors, meta, f"file {str(path)!r}")


def read_extra(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The ``(meta, tensors)`` pair saved with ``model.save(path, extra=...)``.

    ``({}, {})`` when the file has none.

    Example:
        >>> model.save("ckpt.exburn", extra=({"epoch": 3}, {"rng": torch.get_rng_state()}))  # doctest: +SKIP
        >>> meta, tensors = read_extra("ckpt.exburn")  # doctest: +SKIP
    """
    return read_model(path).extra or ({}, {})
