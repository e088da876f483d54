"""Scaling: how one epoch's time grows with data size and with model width.

Data: the guide's MLP, batch 256, one epoch on x1, x4 and x16 of a base size (2,500,
10,000, 40,000 samples), all three in each round. Width: the MLP with hidden layers
(w, w/2) for w = 64, 256 (the guide's) and 1,024, i.e. x1, x4, x16 in width (x1, x4.5
and x25 in matmul work), 10,000 samples, batch 256. A line per contender: seconds
per epoch and the growth over x1 (paired by round). Linear in data means x4 and x16.
"""

from __future__ import annotations

from .. import workloads
from ..contenders import SCALING
from ..harness import Config, Pool, Step, label, measure_row, paired, summary
from .common import cell, errors_note, table

NAME = "scaling"
TITLE = "Scaling with data size and model width"
BATCH = 256
FACTORS = (1, 4, 16)
WIDTHS = (64, 256, 1024)


def sizes(config: Config) -> tuple[int, int]:
    """``(base data size, samples for the width rows)``."""
    return (128, 512) if config.quick else (2_500, 10_000)


def _growth(contenders: dict, keys: list[str]) -> dict:
    out = {}
    for name, data in contenders.items():
        secs = data["seconds"]
        out[name] = {"seconds": {k: summary(secs[k]) for k in keys},
                     "growth": {k: paired(secs[k], secs[keys[0]]) for k in keys}}
    return out


def run(pool: Pool, config: Config, context: dict) -> dict:
    base, width_n = sizes(config)
    workload = workloads.guide_mlp(n=base * FACTORS[-1])
    steps = [Step(f"x{f}", "train", {"n": base * f, "epochs": 1, "batch_size": BATCH}, base * f)
             for f in FACTORS]
    raw = measure_row(pool, SCALING, workload, steps, config.repeats, warmup=steps[:1],
                      rss=False)
    data_rows = _growth(raw["contenders"], [s.key for s in steps])
    width_raw: dict[str, dict] = {}
    errors = dict(raw["errors"])
    step = Step("train", "train", {"n": width_n, "epochs": 1, "batch_size": BATCH}, width_n)
    warm = Step("warm", "train", {"n": min(width_n, 10 * BATCH), "epochs": 1,
                                  "batch_size": BATCH}, 0)
    for width in WIDTHS:
        w = workloads.guide_mlp(n=width_n, width=width)
        r = measure_row(pool, SCALING, w, [step], config.repeats, warmup=[warm], rss=False)
        errors.update(r["errors"])
        for name, data in r["contenders"].items():
            width_raw.setdefault(name, {"seconds": {}})["seconds"][f"w{width}"] = \
                data["seconds"]["train"]
    width_raw = {n: d for n, d in width_raw.items() if len(d["seconds"]) == len(WIDTHS)}
    width_rows = _growth(width_raw, [f"w{w}" for w in WIDTHS])
    return {"base": base, "width_samples": width_n, "batch_size": BATCH, "factors": FACTORS,
            "widths": WIDTHS, "data": data_rows, "width": width_rows,
            "params": {str(w): workloads.param_count(workloads.guide_mlp(width=w))
                       for w in WIDTHS},
            "raw": {"data": raw["contenders"], "width": width_raw}, "errors": errors}


def _lines(rows: dict, keys: list[str]) -> list[list[str]]:
    out = []
    for name, s in rows.items():
        out.append([label(name)] + [cell(s["seconds"][k]) for k in keys]
                   + [f"{s['growth'][k]['median']:.1f}x" for k in keys[1:]])
    return out


def markdown(result: dict) -> str:
    base = result["base"]
    data_keys = [f"x{f}" for f in result["factors"]]
    width_keys = [f"w{w}" for w in result["widths"]]
    params = result["params"]
    data_header = (["contender"] + [f"s/epoch at {base * f:,} (x{f})" for f in result["factors"]]
                   + [f"growth x{f}" for f in result["factors"][1:]])
    width_header = (["contender"] + [f"s/epoch, width {w} ({params[str(w)]:,} params)"
                                     for w in result["widths"]]
                    + [f"growth width {w}" for w in result["widths"][1:]])
    return (f"**Data size** (guide MLP, batch {result['batch_size']}, one epoch)\n\n"
            + table(data_header, _lines(result["data"], data_keys))
            + f"\n\n**Model width** (hidden layers w and w/2, {result['width_samples']:,} "
            f"samples, batch {result['batch_size']}, one epoch)\n\n"
            + table(width_header, _lines(result["width"], width_keys))
            + errors_note(result["errors"]))
