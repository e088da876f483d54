"""``python -m bench [TABLE ...] [--quick] [--threads N] [--repeats N] [--device D]``.

Runs the tables (all by default, in the order of :data:`bench.tables.TABLES`), prints the
markdown report, and writes JSON + markdown to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import report, targets
from .contenders import CONTENDERS
from .harness import MALLOC_SETTINGS, Config, Pool
from .tables import DEFAULT, TABLES

METHOD = (
    "Method: each contender runs in its own worker process (imports, global state and peak "
    "memory never mix); every row is set up in all workers, warmed up once (discarded), then "
    "measured in {repeats} alternating rounds (A B C … A B C …, one process computing at a "
    "time). Cells are medians with (min–max) over the rounds; ratios are paired within a "
    "round. Peak RSS is each worker's high-water mark for that row, imports included. "
    "Clock: {clock}.")
CLOCKS = {"wall": "elapsed (wall) time", "cpu": "each worker's own CPU time (process time of "
          "a one-thread worker: on an idle machine the elapsed time, and not inflated by other "
          "processes on a busy one); elapsed times are in the JSON too"}


def resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    has_driver = Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()
    if has_driver or device == "cuda":
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if device == "cuda":
            raise SystemExit(f"--device cuda: torch {torch.__version__} finds no CUDA GPU here "
                             f"(CUDA build: {torch.version.cuda or 'none'}); nothing was "
                             "measured. The same run on the CPU: --device cpu; the plan "
                             "alone: --dry-run")
    return "cpu"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="*", metavar="TABLE",
                   help=f"tables to run (default: all but gpu, or gpu alone with --device "
                        f"cuda --quick): {', '.join(TABLES)}")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes, 2 rounds (< 60 s); saved as results/quick.*")
    p.add_argument("--dry-run", action="store_true",
                   help="print the tables (and the gpu table's rows) that would run; "
                        "measure nothing (needs no GPU)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads in every worker (default 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="measured rounds per row (default 5; 2 with --quick)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when torch sees a GPU, else the CPU (default)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated contenders (default all): {', '.join(CONTENDERS)}")
    p.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                   help="wall: elapsed time; cpu: each worker's own CPU time, which other "
                        "processes on a busy machine do not inflate (CPU, --threads 1 only); "
                        "auto (default): cpu where it applies, else wall")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's adaptive mmap threshold alone in the workers (by "
                        "default it is fixed at 32 MiB; see bench/README.md)")
    p.add_argument("--no-save", action="store_true", help="print only; write no files")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="measure nothing: rebuild the markdown of a saved run's JSON and "
                        "rewrite its files (latest.* and the README only from latest.json)")
    args = p.parse_args(argv)
    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        p.error(f"unknown table {unknown[0]!r}; the tables are {', '.join(TABLES)}")
    if args.only:
        args.only = [c.strip() for c in args.only.split(",") if c.strip()]
        bad = [c for c in args.only if c not in CONTENDERS]
        if bad:
            p.error(f"unknown contender {bad[0]!r}; the contenders are {', '.join(CONTENDERS)}")
        for reference in ("hand_fused", "hand"):  # every ratio needs the references
            if reference not in args.only:
                args.only.insert(0, reference)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.clock == "cpu" and (args.threads != 1 or args.device == "cuda"):
        p.error("--clock cpu measures one thread's CPU time: use it with --threads 1 on the CPU")
    if args.clock == "auto":
        args.clock = "cpu" if args.threads == 1 and args.device != "cuda" else "wall"
    return args


def render(document: dict) -> str:
    """The markdown report of a run (also from a saved JSON: ``--render``)."""
    config, machine, results = document["config"], document["machine"], document["tables"]
    busy = [v for v in (machine.get("load_average_start"), machine.get("load_average_end")) if v]
    cpus = machine.get("logical_cpus") or 1
    warning = ([f"**Warning: the machine was busy** (1-minute load average "
                f"{', '.join(f'{v[0]:.1f}' for v in busy)} at start/end on {cpus} CPUs; this "
                "run adds 1): other processes shared the CPU"
                + (", so elapsed times are long and noisy; the paired ratios suffer less "
                   "(`--clock cpu` counts only each worker's own CPU time)."
                   if config.get("clock", "wall") == "wall" else
                   "; the CPU-time clock keeps them out of the numbers, but not their effect "
                   "on shared caches and memory bandwidth.")]
               if any(v[0] > cpus for v in busy) else [])
    unavailable = document.get("unavailable") or {}
    return "\n\n".join(
        [f"# exburn_nb bench — {document['started']}"
         + (" (--quick: smoke sizes, not results)" if config["quick"] else ""),
         "## Machine\n\n" + report.machine_markdown(machine, document["workers"]),
         METHOD.format(repeats=config["repeats"], clock=CLOCKS[config.get("clock", "wall")])
         + (" glibc malloc: mmap threshold fixed at 32 MiB, no automatic trim (identical "
            "processes then time alike)." if isinstance(config.get("malloc"), dict) else "")
         + f" Whole run: {document['seconds'] / 60:.1f} min."] + warning
        + [f"## {TABLES[n].TITLE}\n\n{TABLES[n].markdown(results[n])}"
           for n in TABLES if n in results]
        + ["## Targets\n\n" + targets.markdown(targets.check(results))]
        + ([f"Unavailable: {', '.join(f'{k} ({v})' for k, v in unavailable.items())}"]
           if unavailable else []))


def save(document: dict, text: str, echo: Callable[[str], None], latest: bool = True) -> None:
    """Write the run's files; a full run also updates ``latest.*`` and the README
    (unless ``latest`` is False: re-rendering an older run)."""
    config = document["config"]
    tables = config.get("tables") or list(document["tables"])
    complete = not config["quick"] and tables == DEFAULT and not config["only"]
    full = complete and latest
    if config["quick"]:
        stem = "quick"
    else:
        stem = document["started"].replace(":", "") + ("" if complete else "-" + "-".join(tables))
    paths = report.save(document, text, stem, latest=full)
    if full and report.update_readme(text):
        paths.append(report.README)
    echo("wrote " + ", ".join(str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd())
                              else str(p) for p in paths))


def dry_run(names: list[str], args: argparse.Namespace, repeats: int) -> str:
    """What a run with ``args`` would do (the device as asked, not resolved)."""
    device = "cuda" if args.device == "cuda" else "cpu (or cuda with --device auto on a GPU)"
    lines = [f"would run: {', '.join(names)} (quick={args.quick}, repeats={repeats}, "
             f"threads={args.threads}, device={device})"]
    if "gpu" in names:
        config = Config(quick=args.quick, repeats=repeats, only=args.only,
                        device="cuda" if args.device == "cuda" else "cpu")
        lines.append(TABLES["gpu"].describe(config))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.render:
        document = json.loads(Path(args.render).read_text())
        text = render(document)
        print(text)
        if not args.no_save:
            save(document, text, Config().echo, latest=Path(args.render).name == "latest.json")
        return 0
    names = args.tables or (["gpu"] if args.device == "cuda" and args.quick else DEFAULT)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.dry_run:
        print(dry_run(names, args, repeats))
        return 0
    device = resolve_device(args.device)
    if args.clock == "cpu" and device != "cpu":
        if "--clock" in argv:
            raise SystemExit("--clock cpu needs the CPU device: add --device cpu")
        args.clock = "wall"  # auto on a GPU: elapsed time
    config = Config(quick=args.quick, threads=args.threads, repeats=repeats, device=device,
                    log_dir=report.RESULTS / "logs", only=args.only, clock=args.clock,
                    default_malloc=args.default_malloc)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    clock = time.perf_counter()
    machine = report.machine(args.threads, device)
    pool = Pool(config)
    results: dict = {}
    try:
        for name in names:
            config.echo(f"[{name}] {TABLES[name].TITLE}")
            t0 = time.perf_counter()
            results[name] = TABLES[name].run(pool, config, results)
            results[name]["seconds"] = time.perf_counter() - t0
        workers = pool.infos()
    finally:
        pool.close()
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    document = {"started": started, "seconds": time.perf_counter() - clock, "argv": argv,
                "config": {"quick": args.quick, "threads": args.threads, "clock": args.clock,
                           "malloc": "glibc default" if args.default_malloc else MALLOC_SETTINGS,
                           "repeats": repeats, "device": device, "only": args.only,
                           "tables": names},
                "machine": machine, "workers": workers, "unavailable": pool.unavailable,
                "tables": results, "targets": targets.check(results)}
    text = render(document)
    print(text)
    if not args.no_save:
        save(document, text, config.echo)
    return 0
