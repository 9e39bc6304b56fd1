"""``leadpulse bench``: run the benchmark suite and write the report (docs/benchmarks.md).

Each benchmark is a script under ``bench/`` run in its own process (its memory, threads and
brokers die with it); each writes JSON into the output directory, then ``bench.report`` turns
every JSON there into ``REPORT.md`` and PNG plots. A benchmark that fails is reported and the
others still run; the exit status is 1 if any failed. Nothing here judges a timing.

    leadpulse bench                       # full suite into bench/results (an hour or more)
    leadpulse bench --quick --out /tmp/b  # every benchmark at tiny size (a few minutes)
    leadpulse bench --only stream incremental
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from leadpulse.stream.config import Settings

#: benchmark name -> (full-mode extra arguments, quick-mode extra arguments), in run order
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # medians over 3 fresh stores: the machine's speed drifts by up to ~1.5x between minutes
    "graph_store": (["--repeat", "3"], ["--scale", "0.02"]),  # (quick: a smaller world fails its 1,000-seed sample)
    "incremental": ([], ["--quick"]),
    "accounts": (["--batches", "25,100,1000"], ["--quick", "--phases", "2"]),
    # phases bounded so a worker that cannot keep up costs ~4 x 165 s, not ~4 x 360 s
    "stream": (["--duration", "45", "--max-events", "30000", "--drain-timeout", "120"], ["--quick"]),
    "recovery": ([], ["--quick"]),
    "memory": ([], ["--quick"]),
    # the large world's split bounded as in bench/results (6 training cutoffs of 8,000 examples,
    # 1 validation cutoff): ~40 min and 8 GB per seed on this machine instead of hours
    "accuracy": (["--sizes", "large", "--seeds", "0,1,2", "--max-train-cutoffs", "6",
                  "--max-train-examples", "8000", "--valid-cutoffs", "1"], ["--sizes", "tiny", "--seeds", "0"]),
}
#: scripts owned elsewhere that keep their own command line: run by path, output flag differs
BY_PATH = {"graph_store", "accuracy"}


def bench_dir() -> Path:
    from leadpulse import bench
    return Path(bench.__file__).resolve().parent


def _supports(script: Path, flag: str) -> bool:
    """Whether ``script --help`` mentions ``flag`` (scripts owned by others evolve)."""
    try:
        out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return flag in out.stdout


def command(name: str, quick: bool, out: Path, cache: Optional[Path]) -> list[str]:
    """The command line of one benchmark."""
    full_args, quick_args = BENCHMARKS[name]
    extra = list(quick_args if quick else full_args)
    if name in BY_PATH:
        script = bench_dir() / f"{name}.py"
        argv = [sys.executable, str(script)] + extra
        if name == "graph_store":
            return argv + ["--out", str(out / "graph_store.json")]
        if cache:
            argv += ["--data", str(cache)]
        if quick and _supports(script, "--epochs"):
            argv += ["--epochs", "5"]
        return argv + ["--out", str(out)]
    argv = [sys.executable, "-m", f"bench.{name}"] + extra + ["--out", str(out)]
    return argv + (["--cache", str(cache)] if cache else [])


def _call_group(argv: list[str]) -> int:
    """Run ``argv`` in a process group of its own and wait; if we are stopped meanwhile
    (Ctrl-C, SIGTERM), kill the whole group: the benchmark and the worker it started (its
    broker dies with it), not only the script."""
    proc = subprocess.Popen(argv, cwd=bench_dir().parent, process_group=0)
    try:
        return proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_suite(names: list[str], quick: bool, out: Path, cache: Optional[Path] = None) -> dict:
    """Run ``names`` in order; return what ran, how long it took and how it ended."""
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in names:
        argv = command(name, quick, out, cache)
        print(f"=== bench {name}: {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        code = _call_group(argv)
        runs.append({"name": name, "argv": argv, "exit_code": code,
                     "wall_seconds": round(time.perf_counter() - t0, 1)})
        print(f"=== bench {name}: exit {code} after {runs[-1]['wall_seconds']:.0f} s", flush=True)
    return {"quick": quick, "runs": runs}


def _merge_earlier(path: Path, suite: dict) -> None:
    """Keep the earlier runs of benchmarks not rerun now (``--only`` refreshes part of a report)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    names = {r["name"] for r in suite["runs"]}
    kept = [r for r in earlier.get("runs", []) if r["name"] not in names]
    suite["runs"] = kept + suite["runs"]
    commands = earlier.get("commands", [earlier["command"]] if earlier.get("command") else []) if kept else []
    suite["commands"] = commands + [suite["command"]]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    names = args.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"leadpulse bench: unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else bench_dir() / "results"
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    t0 = time.perf_counter()
    suite = run_suite(names, args.quick, out, Path(args.cache) if args.cache else None)
    suite["command"] = "leadpulse " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else \
        "leadpulse bench" + (" --quick" if args.quick else "") + (f" --only {' '.join(names)}" if args.only else "")
    suite["wall_seconds"] = round(time.perf_counter() - t0, 1)
    suite["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _merge_earlier(out / "run.json", suite)
    (out / "run.json").write_text(json.dumps(suite, indent=2) + "\n")
    # its own process too: matplotlib stays out of the CLI process
    code = subprocess.call([sys.executable, "-m", "leadpulse.bench.report", "--results", str(out)], cwd=bench_dir().parent)
    if code != 0:
        print(f"leadpulse bench: the report failed (exit {code})", file=sys.stderr)
        return 1
    failed = [r["name"] for r in suite["runs"] if r["exit_code"] != 0]
    if failed:
        print(f"leadpulse bench: failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run the benchmarks and write bench/results/REPORT.md",
                              description="Run the benchmark suite (throughput and latency beside a "
                                          "Faust pass-through, incremental vs full recompute, accuracy "
                                          "over seeds, recovery, memory) and write JSON, PNG plots and "
                                          "a Markdown report. Benchmarks measure; they never fail on time.")
    p.add_argument("--quick", action="store_true",
                   help="every benchmark at tiny size (checks the suite runs; a few minutes)")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help=f"run only these: {', '.join(BENCHMARKS)}")
    p.add_argument("--out", default=None, help="output directory (default bench/results)")
    p.add_argument("--cache", default=None, help="simulated worlds and models cache (default /tmp/leadpulse-bench)")
    p.set_defaults(func=_run)
