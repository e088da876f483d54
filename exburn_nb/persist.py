"""Files: tensors as safetensors, everything else as JSON in the safetensors header.

Nothing here unpickles or evaluates anything: a file is a length-prefixed JSON header
followed by raw tensor bytes, so loading a hostile file can fail but never run code.
One SHA-256 covers the whole content: the metadata text and every tensor's name, dtype,
shape and bytes, so a changed byte anywhere is caught, never applied. Writes are atomic
(a temp file in the same folder, fsync, then ``os.replace``), so a crash or kill
mid-write leaves the old file intact.

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
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

FORMAT = "exburn_nb/2"
_META_KEY = "exburn_nb"
_SUM_KEY = "exburn_nb.sha256"
MAX_HEADER_BYTES = 64 * 2**20  # the JSON header (metadata, history rows, tensor index)
MAX_NESTING = 64  # how deep JSON lists and objects may nest in a header
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _digest(meta_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata text and every tensor's name, dtype, shape and bytes."""
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


def parse_json(text: bytes | str, what: str) -> object:
    """``json.loads`` for untrusted text: nesting bounded by :data:`MAX_NESTING`, no NaN.

    Raises ``ValueError`` naming ``what`` (never ``RecursionError``).
    """
    raw = text.encode() if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    depth = np.cumsum((codes == ord("[")) | (codes == ord("{")), dtype=np.int64) - np.cumsum(
        (codes == ord("]")) | (codes == ord("}")), dtype=np.int64)
    if depth.size and depth.max() > MAX_NESTING:
        raise ValueError(f"{what} nests lists or objects {int(depth.max())} deep; at most "
                         f"{MAX_NESTING} levels are allowed")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None


def to_bytes(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """Serialise tensors and JSON-ready metadata (with a checksum) into one safetensors blob.

    ``tensors`` must not change while this runs (clone them under the writer's lock).
    """
    payload = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    text = json.dumps({"format": FORMAT, **meta}, allow_nan=False)
    blob = _save_tensors(payload, metadata={_META_KEY: text, _SUM_KEY: _digest(text, payload)})
    header = struct.unpack("<Q", blob[:8])[0]
    if header > MAX_HEADER_BYTES:
        raise ValueError(f"the file's header would be {header:,} bytes, over the limit of "
                         f"{MAX_HEADER_BYTES:,} (MAX_HEADER_BYTES); keep large data in tensors")
    return blob


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
    try:
        header = parse_json(data[8:8 + size], "its header")
        stored = header["__metadata__"]
        text, checksum = stored[_META_KEY], stored[_SUM_KEY]
    except (KeyError, TypeError):
        raise bad("its header is not an exburn_nb header (corrupted or another format)") from None
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(text, str) or not isinstance(checksum, str):
        raise bad("its header is not an exburn_nb header (corrupted or another format)")
    try:
        meta = parse_json(text, "its metadata")
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}; "
                  f"expected {FORMAT!r}")
    try:
        tensors = _load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise bad(f"its tensor data is damaged ({exc})") from None
    if checksum != _digest(text, tensors):
        raise bad("its contents do not match its checksum (corrupted or edited)")
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
