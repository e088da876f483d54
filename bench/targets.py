"""The issue's targets, checked against one run's results (no timing is asserted in tests)."""

from __future__ import annotations

from .harness import paired
from .tables.common import rates, table

BOUND_FRACTION = 0.5
OVERHEAD_S = 50e-6


def _mlp_row(training: dict, batch: int) -> dict | None:
    for row in training.get("rows", []):
        if row["workload"]["name"] == "guide MLP" and row["batch_size"] == batch:
            return row
    return None


def _ratio(row: dict, name: str) -> dict | None:
    s = row["stats"].get(name)
    return s["ratio"] if s and s["ratio"]["n"] else None


def _versus(row: dict, a: str, b: str) -> dict | None:
    raw = row["raw"]
    if a not in raw or b not in raw:
        return None
    key = next(iter(raw[a]["seconds"]))
    return paired(rates(raw[a]["seconds"][key], 1), rates(raw[b]["seconds"][key], 1))


def _fmt(s: dict) -> str:
    return f"{s['median']:.2f}x ({s['min']:.2f}–{s['max']:.2f})"


def check(tables: dict) -> list[dict]:
    """``[{"target", "measured", "met"}]``; ``met`` is None when not measured in this run."""
    out: list[dict] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    training = tables.get("training", {})
    for batch, need in ((256, 1.0), (32, 1.05)):
        row = _mlp_row(training, batch) if training else None
        r = _ratio(row, "xb") if row else None
        add(f"xb.fit >= {need:.2f}x the hand loop, guide MLP, batch {batch}",
            _fmt(r) if r else "not measured", r["median"] >= need if r else None)
    for row in training.get("rows", []):
        if "MLP" in row["workload"]["name"]:
            r = row.get("vs_best", {}).get("xb")
            r = r if r and r["n"] else None
            add(f"xb.fit >= 1.00x the best hand loop (fused Adam, losses read per epoch), "
                f"{row['workload']['name']}, batch {row['batch_size']}",
                _fmt(r) if r else "not measured", r["median"] >= 1.0 if r else None)
    overhead = tables.get("overhead")
    if overhead and "xb" in overhead["stats"]:
        s = overhead["stats"]["xb"]["overhead_seconds"]
        add("per-step overhead of xb.fit, tiny model, batch 32 <= 50 µs",
            f"{s['median'] * 1e6:+.1f} µs ({s['min'] * 1e6:+.1f} to {s['max'] * 1e6:+.1f})",
            s["median"] <= OVERHEAD_S)
    else:
        add("per-step overhead of xb.fit, tiny model, batch 32 <= 50 µs", "not measured", None)
    inference = tables.get("inference", {})
    for row in inference.get("rows", []):
        r = _ratio(row, "xb")
        add(f"xb predict within 5% of raw inference batches, {row['workload']['name']}, "
            f"batch {row['batch_size']}", _fmt(r) if r else "not measured",
            r["median"] >= 0.95 if r else None)
    for row in training.get("rows", []):
        where = f"{row['workload']['name']}, batch {row['batch_size']}"
        for peer, need in (("keras", 2.0), ("lightning", 1.5)):
            r = _versus(row, "xb", peer)
            add(f"xb.fit >= {need}x {peer}, {where}", _fmt(r) if r else "not measured",
                r["median"] >= need if r else None)
    for row in tables.get("live", {}).get("rows", []):
        for name in ("live_plot", "dashboard"):
            r = row["stats"][name]["cost"]
            add(f"{name} within 5% of headless xb.fit, {row['workload']['name']}",
                _fmt(r) if r["n"] else "not measured", r["median"] <= 1.05 if r["n"] else None)
    experiment = tables.get("experiment")
    if experiment:
        for name, need in (("experiment", 1.02), ("watched", 1.05)):
            r = experiment["stats"][name]["cost"]
            add(f"{name} adds <= {need - 1:.0%} over separate xb.fit runs (grid of 8)",
                _fmt(r) if r["n"] else "not measured", r["median"] <= need if r["n"] else None)
        r = experiment["many"]["runs"]
        add(f"exp.runs of {experiment['sizes']['runs']} runs builds in < 0.5 s",
            f"{r['median']:.3f} s ({r['min']:.3f}–{r['max']:.3f})", r["median"] < 0.5)
    limit = tables.get("limit", {})
    for batch, name, label in (("256", "xb", "xb.fit"),
                               ("32", "xb_compiled", "xb.fit compile=True")):
        fr = limit.get("fractions", {}).get(batch, {}).get(name)
        add(f"{label} >= 50% of the float32 matmul bound (6 x params FLOPs), guide MLP, "
            f"batch {batch}",
            f"{fr['fraction']['median']:.0%} ({fr['fraction']['min']:.0%}–"
            f"{fr['fraction']['max']:.0%}); strict: {fr['strict_fraction']['median']:.0%}"
            if fr else "not measured", fr["fraction"]["median"] >= BOUND_FRACTION if fr else None)
    return out


def markdown(checks: list[dict]) -> str:
    mark = {True: "met", False: "**missed**", None: "–"}
    return table(["target", "measured (median, min–max)", ""],
                 [[c["target"], c["measured"], mark[c["met"]]] for c in checks])
