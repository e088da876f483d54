"""Networks out to the field's own formats: ONNX (for onnxruntime and the tools around it)
and ``torch.export`` programs (``.pt2``), chosen by the file's suffix.

Both go through ``torch.export``: the module is traced once with a batch of two and a
dynamic batch dimension, so the file takes any batch size. ONNX uses torch's default
exporter (``torch.onnx.export(..., dynamo=True)``, which needs the ``onnx`` and
``onnxscript`` packages of the ``[export]`` extra); its console chatter is silenced.
Files are written atomically (:func:`~exburn_nb.io.persist.write_bytes`).

Example:
    >>> import os, tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt2")
    >>> export_module(net, torch.zeros(2, 3), path)
    >>> torch.export.load(path).module()(torch.ones(5, 3)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import torch
from torch import nn

from .persist import check_file_path, write_bytes

EXPORT_SUFFIXES = (".onnx", ".pt2")
ONNX_PACKAGES = ("onnx", "onnxscript")
INSTALL_HINT = "pip install 'exburn_nb[export]'"
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo",
                  "onnxscript")


def check_export_path(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it names a file to export to: suffix ``.onnx`` or ``.pt2``,
    in a folder that exists; a ``ValueError`` naming the path otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file name ending in {' or '.join(EXPORT_SUFFIXES)}; "
                         f"got {path!r}")
    path = Path(path)
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise ValueError(f"path {str(path)!r}: export writes {' or '.join(EXPORT_SUFFIXES)} "
                         "files (ONNX or a torch.export program), chosen by the suffix; got "
                         + (f"{path.suffix!r}" if path.suffix else "no suffix"))
    return check_file_path(path, f"model{path.suffix.lower()}")


def check_onnx_packages(path: Path) -> None:
    """An ``ImportError`` saying which extra to install when ONNX export's packages are
    missing."""
    for name in ONNX_PACKAGES:
        try:
            import_module(name)
        except ImportError:
            raise ImportError(f"exporting {str(path)!r} to ONNX needs the packages "
                              f"{' and '.join(ONNX_PACKAGES)} (package {name!r} is missing): "
                              f"{INSTALL_HINT}") from None


@contextmanager
def quiet() -> Iterator[None]:
    """No warnings and no log lines below ERROR from the exporters for the block."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def export_module(module: nn.Module, example: torch.Tensor, path: str | os.PathLike,
                  input_name: str = "input") -> None:
    """Write ``module`` (in the mode it is in: put it in eval mode first) to ``path``:
    ONNX for ``.onnx`` (input ``input_name``, output ``"output"``), a ``torch.export``
    program for ``.pt2``; the batch dimension of ``example`` (a batch of at least two)
    is dynamic.

    Raises:
        ValueError: for a bad path, or a module torch cannot export with a dynamic batch.
        ImportError: for ``.onnx`` without the ``[export]`` extra.
    """
    path = check_export_path(path)
    onnx = path.suffix.lower() == ".onnx"
    if onnx:
        check_onnx_packages(path)
    shapes = ({0: torch.export.Dim("batch")},)
    try:
        with quiet():
            if onnx:
                program = torch.onnx.export(module, (example,), None, dynamo=True,
                                            input_names=[input_name], output_names=["output"],
                                            dynamic_shapes=shapes, verbose=False)
                blob = program.model_proto.SerializeToString()
            else:
                buffer = io.BytesIO()
                torch.export.save(torch.export.export(module, (example,),
                                                      dynamic_shapes=shapes), buffer)
                blob = buffer.getvalue()
    except Exception as exc:  # noqa: BLE001 - the exporters' many kinds, each named with the path
        raise ValueError(f"path {str(path)!r}: torch could not export the network with a "
                         f"dynamic batch dimension ({type(exc).__name__}: {exc})") from exc
    write_bytes(path, blob)
