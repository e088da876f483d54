"""``python -m bench``'s arguments and the gpu table's plan (nothing is measured here)."""

import pytest
import torch

from bench import cli
from bench.harness import Config
from bench.tables import DEFAULT, TABLES, gpu


def test_device_cuda_quick_plans_the_gpu_table_alone(capsys):
    assert cli.main(["--device", "cuda", "--quick", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would run: gpu (quick=True, repeats=2")
    assert "device=cuda" in out and "hand, hand_fused, xb, xb_compiled" in out
    assert "guide MLP" in out and "batch 32" in out
    assert "M=16 on gpu" in out and "M=64 on gpu" in out


def test_without_tables_every_table_but_gpu_runs(capsys):
    assert cli.main(["--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"would run: {', '.join(DEFAULT)} ")
    assert "gpu" in TABLES and "gpu" not in DEFAULT


def test_gpu_table_on_the_cpu_plans_cpu_rows():
    plan = gpu.plan(Config(quick=True, device="cpu"))
    assert [r["device"] for r in plan["sweep"]] == ["cpu", "cpu"]
    assert [b for _, b, _ in plan["training"]] == [32, 32]


def test_device_cuda_without_a_gpu_stops_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"--device cuda: torch .* finds no CUDA GPU here .*"
                                         r"nothing was measured.*--device cpu"):
        cli.main(["--device", "cuda", "--quick", "--no-save"])


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown table 'nosuch'"),
    (["--only", "xb,nobody"], "unknown contender 'nobody'"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
])
def test_bad_arguments_are_refused_by_name(capsys, argv, message):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err
