"""Helpers shared by the table modules: per-round rates, ratios and markdown cells."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..harness import label, paired, summary


def rates(seconds: Sequence[float], samples: int) -> list[float]:
    """Samples/s of each round."""
    return [samples / s for s in seconds]


def row_stats(contenders: dict, key: str, samples: int, reference: str = "hand") -> dict:
    """Per contender: samples/s summary, ratio to ``reference`` (paired by round), RSS."""
    ref = contenders.get(reference)
    ref_rates = rates(ref["seconds"][key], samples) if ref else []
    out = {}
    for name, data in contenders.items():
        r = rates(data["seconds"][key], samples)
        out[name] = {"samples_per_s": summary(r),
                     "ratio": paired(r, ref_rates) if ref_rates else summary([]),
                     "seconds": summary(data["seconds"][key]),
                     "peak_rss_mib": data.get("peak_rss_mib"),
                     "base_rss_mib": data.get("base_rss_mib"),
                     "rss_cumulative": data.get("cumulative", False),
                     "threads_seen": sorted(set(data.get("threads", [])))}
    return out


def num(value: float, digits: int = 3) -> str:
    """A number with about ``digits`` significant digits and thousands separators."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value))))) if value else 0
    return f"{value:,.{decimals}f}"


def cell(s: dict, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    """``median (min–max)``."""
    if not s or not s.get("n"):
        return "–"
    return (f"{num(s['median'] * scale, digits)}{suffix} "
            f"({num(s['min'] * scale, digits)}–{num(s['max'] * scale, digits)})")


def ratio_cell(s: dict) -> str:
    if not s or not s.get("n"):
        return "–"
    return f"{s['median']:.2f}x ({s['min']:.2f}–{s['max']:.2f})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def errors_note(errors: dict) -> str:
    if not errors:
        return ""
    return "\n" + "\n".join(f"- {label(n)} failed: `{msg}`" for n, msg in errors.items())


def kernel_rounds(setup: str, round_code: str, repeats: int, extra: Sequence[str] = (),
                  timeout: int = 1800) -> object:
    """Run ``setup``, then ``round_code`` ``repeats + 1`` times (the first is the warm-up),
    then the ``extra`` cells, in one real Jupyter kernel (nbclient); the JSON that the last
    cell prints. The live-cost tables measure widgets where they really run: a kernel."""
    import json

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup)]
    nb.cells += [nbformat.v4.new_code_cell(round_code) for _ in range(repeats + 1)]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in extra]
    NotebookClient(nb, timeout=timeout, kernel_name="python3").execute()
    return json.loads(nb.cells[-1].outputs[0]["text"])


def measure_contenders(setup: str, round_code: str, contenders: Sequence[str], workload: dict,
                       repeats: int, threads: int) -> dict[str, list[float]]:
    """Seconds per contender, one value per measured round (warm-up dropped): ``setup`` and
    ``round_code`` are templates filled with the contenders, the threads and ``workload``."""

    names = list(contenders)
    filled = setup.format(threads=threads, contenders=names,
                          **{k: v for k, v in workload.items() if k != "name"})
    times = kernel_rounds(filled, round_code.format(contenders=names), repeats,
                          extra=["print(json.dumps(times))"])
    return {name: values[1:] for name, values in times.items()}

