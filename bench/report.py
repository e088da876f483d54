"""The machine's description, the markdown report, and the files in ``bench/results/``."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- latest-results:begin -->", "<!-- latest-results:end -->"


def _cpuinfo() -> dict:
    info: dict = {"model": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
        info["model"] = m.group(1).strip()
    cores = {(p, c) for p, c in re.findall(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)",
                                           text, re.S)}
    if cores:
        info["physical_cores"] = len(cores)
    if m := re.search(r"^flags\s*:\s*(.+)$", text, re.M):
        flags = m.group(1).split()
        info["simd"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return info


def _memory_gib() -> float | None:
    try:
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        return round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git() -> str | None:
    """The checked-out commit, with ``+changes`` when the package has uncommitted edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "exburn_nb"], cwd=root,
                               text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + (" +changes in exburn_nb" if dirty else "")) if commit else None


def machine(threads: int, device: str) -> dict:
    """What the numbers were measured on."""
    cpu = _cpuinfo()
    return {"cpu": cpu["model"], "logical_cpus": os.cpu_count(),
            "physical_cores": cpu.get("physical_cores"), "simd": cpu.get("simd", []),
            "memory_gib": _memory_gib(), "os": f"{platform.system()} {platform.release()}",
            "python": sys.version.split()[0], "torch_threads": threads, "device": device,
            "versions": {d: _version(d) for d in ("torch", "exburn_nb", "keras", "lightning",
                                                  "skorch", "numpy")},
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "git": _git()}


def machine_markdown(m: dict, workers: dict) -> str:
    gpu = next((w.get("gpu") for w in workers.values() if w and w.get("gpu")), None)
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    threads = {w["threads"] for w in workers.values() if w}
    load = m.get("load_average_start")
    end = m.get("load_average_end")
    lines = [
        f"- CPU: {m['cpu']}, {m['physical_cores'] or '?'} cores / {m['logical_cpus']} logical "
        f"CPUs ({', '.join(m['simd']) or 'no AVX'}), {m['memory_gib']} GiB RAM; {m['os']}",
        f"- Device: {m['device']}" + (f" ({gpu})" if gpu else ""),
        f"- torch.set_num_threads({m['torch_threads']}) in every worker (seen there: "
        f"{sorted(threads)}); interop threads: "
        f"{sorted({w['interop_threads'] for w in workers.values() if w})}",
        f"- Python {m['python']}; {versions}"
        + (f"; exburn_nb at commit {m['git']}" if m.get("git") else ""),
    ]
    if load:
        lines.append(f"- Load average (1, 5, 15 min) at start: {', '.join(f'{v:.2f}' for v in load)}"
                     + (f"; at end: {', '.join(f'{v:.2f}' for v in end)}" if end else ""))
    return "\n".join(lines)


def save(document: dict, text: str, stem: str, latest: bool) -> list[Path]:
    """Write ``<stem>.json`` / ``.md`` (and ``latest.*`` when ``latest``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = []
    names = [stem] + (["latest"] if latest else [])
    for name in names:
        for suffix, content in ((".json", json.dumps(document, indent=1, default=str)),
                                (".md", text)):
            path = RESULTS / f"{name}{suffix}"
            path.write_text(content + "\n")
            paths.append(path)
    return paths


def update_readme(text: str) -> bool:
    """Put the latest tables between the README's markers; False when the markers are absent."""
    if not README.exists():
        return False
    readme = README.read_text()
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        return False
    if text.startswith("# "):  # the H1 becomes a line naming the run
        title, body = text.split("\n", 1)
        stamp = title.rsplit("— ", 1)[-1]
        body = f"The run of {stamp}, as in `bench/results/latest.md`.\n" + body
    else:
        body = text
    body = re.sub(r"^## ", "### ", body, flags=re.M)
    README.write_text(readme[:start + len(BEGIN)] + "\n" + body.strip() + "\n" + readme[end:])
    return True
