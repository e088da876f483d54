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


def test_every_test_the_what_survives_what_table_names_exists():
    """Each row of "What survives what" names the tests that check it: they must exist."""
    text = README.read_text()
    table = text[text.index("## What survives what"):text.index("## The API")]
    named = 0
    for row in (line for line in table.splitlines() if line.startswith("| ")):
        path = None
        for ref in re.findall(r"`([^`]+)`", row.rstrip("|").split("|")[-1]):
            if ref.startswith("tests/"):
                path, *names = ref.split("::")
            elif ref.startswith("::"):
                names = [ref[2:]]
            else:
                continue
            source = (README.parent / path).read_text()
            for name in names:
                assert f"def {name.split('[')[0]}(" in source, f"{path}::{name} is not a test"
                named += 1
    assert named >= 40
