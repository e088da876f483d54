"""Doctests (``make test`` runs every docstring example): ``xb`` and ``torch`` are there."""

import pytest
import torch

import exburn_nb


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(xb=exburn_nb, torch=torch)
