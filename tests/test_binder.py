"""binder/ holds what Binder (repo2docker) needs to open the notebooks: requirements.txt
(installed first, from the repository root) and postBuild (run after the repository is
copied in). Checked here statically, and by installing it into a fresh virtual environment.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
INSTALL_TIMEOUT_S = 1200


def requirement_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def requirement_name(line: str) -> str:
    return re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-")


def makefile_torch() -> str:
    """The Makefile's torch pin (``TORCH ?= torch==...``), overridable like make's."""
    match = re.search(r"^TORCH\s*\?=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    return os.environ.get("TORCH") or (match.group(1) if match else "torch")


def test_requirements_pin_a_cpu_torch_and_cover_the_package_dependencies() -> None:
    lines = requirement_lines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    torch = [line for line in lines if requirement_name(line) == "torch"]
    assert len(torch) == 1 and torch[0].endswith("+cpu"), torch
    assert not any(line.startswith(("-e", ".")) for line in lines), \
        "install exburn_nb in binder/postBuild, not requirements.txt (see its comment)"

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {requirement_name(d) for d in project["dependencies"]}
    needed |= {"scikit-learn"}  # the notebooks' data sets
    listed = {requirement_name(line) for line in lines if not line.startswith("-")}
    assert needed <= listed, f"binder/requirements.txt lacks {sorted(needed - listed)}"


def test_post_build_installs_the_package_and_runtime_is_pinned() -> None:
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    text = post_build.read_text()
    assert text.startswith("#!/bin/bash") and "pip install" in text and "-e ." in text
    assert re.fullmatch(r"python-3\.\d+\n", (BINDER / "runtime.txt").read_text())


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def run(args: list, **kwargs) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          **kwargs)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


SMOKE = """
import torch
import exburn_nb as xb
import exburn_nb.widgets
import sklearn, plotly, ipywidgets, anywidget, voila

assert torch.version.cuda is None, "the CUDA build of torch was installed"
assert xb.__file__.startswith({copy!r}), xb.__file__  # postBuild's editable install
(x, y), (tx, ty) = xb.datasets.digits()
spec = xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden").dense(10)
model = xb.fit(xb.compile(spec, learning_rate=1e-2, seed=0), (x, y), epochs=3, verbose=False)
loss, accuracy = xb.evaluate(model, (tx, ty), accuracy=True)
assert accuracy > 0.8, accuracy
dash = xb.widgets.TrainingDashboard(model, (x, y), epochs=1)
print("binder environment ok", round(accuracy, 3))
"""


@pytest.mark.skipif(not pypi_reachable(), reason="no network: cannot reach pypi.org:443 to "
                    "install binder/requirements.txt into a fresh virtual environment")
def test_binder_environment_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(env_dir)}
    env.pop("PYTHONPATH", None)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]

    # torch: Binder gets the CPU build from download.pytorch.org (the --extra-index-url line).
    # That index may be unreachable from here, so install the Makefile's pin first (the same
    # version; on this project's machines a CPU build from a local file) and hand pip the
    # requirements without the index line and the torch line.
    run([*pip, makefile_torch()], env=env)
    stripped = tmp_path / "requirements.txt"
    stripped.write_text("\n".join(line for line in requirement_lines()
                                  if not line.startswith("--extra-index-url")
                                  and requirement_name(line) != "torch") + "\n")
    run([*pip, "-r", str(stripped)], env=env)

    # postBuild, as repo2docker runs it: from the repository root, with the environment's
    # python first on PATH. Here on a copy, so the working tree gets no build files.
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", ".hypothesis",
        "node_modules", "artifacts"))
    run(["bash", str(copy / "binder" / "postBuild")], cwd=copy, env=env)

    run([str(python), "-c", SMOKE.format(copy=str(copy))], cwd=tmp_path, env=env)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
