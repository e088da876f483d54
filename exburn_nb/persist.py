"""Files: tensors as safetensors, everything else as JSON in the safetensors header.

Nothing here unpickles or evaluates anything: a file is a length-prefixed JSON header
followed by raw tensor bytes, so loading a hostile file can fail but never run code.
Writes are atomic (a temp file in the same folder, fsync, then ``os.replace``), so a
crash or kill mid-write leaves the old file intact.

Example:
    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.exburn")
    >>> write_file(path, {"w": torch.ones(2)}, {"kind": "demo"})
    >>> tensors, meta = read_file(path)
    >>> meta["kind"], tensors["w"].tolist()
    ('demo', [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

FORMAT = "exburn_nb/1"
_META_KEY = "exburn_nb"
_MAX_HEADER = 100_000_000  # safetensors' own limit


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (catches flipped bits)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def to_bytes(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """Serialise tensors and JSON-ready metadata (with a checksum) into one safetensors blob."""
    payload = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {_META_KEY: json.dumps({"format": FORMAT, **meta, "sha256": _digest(payload)},
                                    allow_nan=False)}
    return _save_tensors(payload, metadata=header)


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
    if size > min(_MAX_HEADER, len(data) - 8):
        kind = " (it looks like a pickle, which is never loaded)" if data[:1] == b"\x80" else ""
        raise bad(f"its header claims {size} bytes but the file has {len(data) - 8}: "
                  f"truncated, corrupted or another format{kind}")
    try:
        header = json.loads(data[8:8 + size])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise bad("its header is not an exburn_nb header (corrupted or another format)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}; "
                  f"expected {FORMAT!r}")
    try:
        tensors = _load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise bad(f"its tensor data is damaged ({exc})") from None
    if meta.get("sha256") != _digest(tensors):
        raise bad("its tensor data does not match its checksum (corrupted)")
    return tensors, meta


def write_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write atomically: the file at ``path`` is either the old one or the complete new one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name such as "
                         f"{str(path / 'model.exburn')!r}")
    if not path.parent.exists():
        raise ValueError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
    blob = to_bytes(tensors, meta)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`write_file` (``ValueError`` naming the file if it can't)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at path {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    return from_bytes(path.read_bytes(), source=f"file {str(path)!r}")


def read_extra(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The ``extra`` part a file was saved with (``Model.save(path, extra=...)``): its
    metadata and its tensors (names without the ``extra.`` prefix)."""
    tensors, meta = read_file(path)
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta.get("extra") or {}, extra
