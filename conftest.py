"""Doctests: ``make test`` runs every docstring example in the package (``xb`` and
``torch`` are in their namespace). Only ``exburn_nb/`` is collected for doctests, so the
test folders' own ``conftest.py`` files are never imported as doctest modules."""

from pathlib import Path

import pytest
import torch
from _pytest.doctest import DoctestModule

import exburn_nb

PACKAGE = Path(exburn_nb.__file__).resolve().parent


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DoctestModule | None:
    path = file_path.resolve()
    if path.suffix == ".py" and path.name != "__main__.py" and PACKAGE in path.parents:
        return DoctestModule.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(xb=exburn_nb, torch=torch)
