"""Every Python block of the README runs as written (in a scratch folder)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_block_runs_as_written(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), namespace)
    xb = namespace["xb"]
    trained = [v for v in namespace.values() if isinstance(v, xb.Model) and len(v.history)]
    finished = [v for v in namespace.values() if isinstance(v, xb.Experiment)
                and (v.summary["state"] == "finished").any()]
    assert trained or finished, "the block trained nothing"
