"""Memory benchmark: worker RSS and store size as events accumulate, and growth per 100k events.

Two series, both sampled every ``--step`` events:

* **worker** — a real ``leadpulse worker`` fed the world at full speed in steps; once its
  account stage has applied each step, the RSS of the worker process (and its children) and
  the bytes of its data directory (graph store, router state, score book, Faust's directory). Bounded by
  ``--worker-events`` and ``--budget`` seconds: at the worker's current rate 1M events take
  far longer than a benchmark run should, so the 1M figure is extrapolated from the slope
  (marked as such in the JSON and the report).
* **store** — the graph store alone (RocksDB, in this process) applying the 100k-contact world
  up to ``--store-events`` (default 1M): the RSS growth since the events were loaded and the
  store's bytes on disk. This reaches 1M events in minutes.

Growth per 100k events is the least-squares slope over the samples.

    python bench/memory.py                 # worker 200k events (or 10 min), store 1M (~15 min)
    python bench/memory.py --quick         # tiny world
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from leadpulse.bench.common import (
    Service,
    Settled,
    add_model_args,
    benchmark_model,
    du,
    ensure_world,
    fill_defaults,
    model_defaults,
    start_broker,
    wait_for,
    write_json,
)
from leadpulse.bench.stream import Phase, load_stream, send

TARGET = 1_000_000  # the figure


def rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children."""
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def fit(samples: list[dict], key: str) -> dict:
    """Slope per 100k events of ``key`` and its value at ``TARGET`` (measured or extrapolated)."""
    import numpy as np
    xs = np.array([s["events"] for s in samples], dtype=float)
    ys = np.array([s[key] for s in samples], dtype=float)
    if len(xs) < 2 or xs.max() == xs.min():
        return {"per_100k": None, "at_1m": None, "at_1m_extrapolated": None}
    slope, intercept = np.polyfit(xs, ys, 1)
    reached = xs.max() >= TARGET
    at = float(ys[np.argmin(np.abs(xs - TARGET))]) if reached else float(intercept + slope * TARGET)
    return {"per_100k": float(slope * 100_000), "at_1m": at, "at_1m_extrapolated": not reached}


def worker_series(args: argparse.Namespace) -> dict:
    tables = ensure_world(args.world, args.seed, args.cache)
    preload, pool = load_stream(tables)
    msgs = (preload + pool)[:args.worker_events]
    samples, began = [], time.monotonic()
    with contextlib.ExitStack() as stack:
        bootstrap = start_broker(stack)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lp-bench-memory-")))
        svc = Service(bootstrap, work / "worker", model_dir=args.models)
        svc.ensure_topics()
        svc.start()
        stack.callback(svc.kill)
        samples.append({"events": 0, "rss_bytes": rss(svc.proc.pid), "store_bytes": du(svc.data_dir / "worker"),
                        "seconds": 0.0})
        sent = 0

        async def send_step(step: list) -> None:
            from leadpulse.stream.publish import new_producer, start_producer
            producer = new_producer(bootstrap, client_id="leadpulse-bench")
            await start_producer(producer, bootstrap)
            try:
                await send(producer, svc.prefix, Phase("step", None, step))
            finally:
                await producer.stop()

        for lo in range(0, len(msgs), args.step):
            step = msgs[lo:lo + args.step]
            asyncio.run(send_step(step))
            sent += len(step)
            left = args.budget - (time.monotonic() - began)
            done = wait_for(Settled([svc], sent), max(left, 1), 0.5)
            samples.append({"events": sent, "rss_bytes": rss(svc.proc.pid),
                            "store_bytes": du(svc.data_dir / "worker"),
                            "seconds": round(time.monotonic() - began, 1), "applied": done})
            print(f"  worker: {sent:,} events, RSS {samples[-1]['rss_bytes'] / 1e6:.0f} MB, "
                  f"store {samples[-1]['store_bytes'] / 1e6:.1f} MB", flush=True)
            if not done or time.monotonic() - began > args.budget:
                print("  worker: time budget reached", flush=True)
                break
    return worker_result(args.world, samples)


def worker_result(world: str, samples: list[dict]) -> dict:
    """Fit and reach over the samples taken with their step applied (the one cut off by the
    budget holds events the worker had not applied yet)."""
    settled = [s for s in samples if s.get("applied", True)]
    return {"world": world, "samples": samples, "rss": fit(settled, "rss_bytes"),
            "store": fit(settled, "store_bytes"), "events_reached": settled[-1]["events"]}


def store_series(args: argparse.Namespace) -> dict:
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.schemas.tables import read_tables
    tables = ensure_world(args.store_world, args.seed, args.cache)
    events, _ = read_tables(tables)
    events = events[:args.store_events]
    gc.collect()
    me = psutil.Process()
    base = me.memory_info().rss
    path = Path(tempfile.mkdtemp(prefix="lp-bench-memstore-"))
    samples = [{"events": 0, "rss_bytes": 0, "store_bytes": 0, "seconds": 0.0}]
    began = time.monotonic()
    try:
        store = RocksDBGraphStore(path / "graph")
        for lo in range(0, len(events), args.store_step):
            chunk = events[lo:lo + args.store_step]
            for b in range(0, len(chunk), 5000):
                store.apply(chunk[b:b + 5000])
            samples.append({"events": lo + len(chunk), "rss_bytes": me.memory_info().rss - base,
                            "store_bytes": du(path), "seconds": round(time.monotonic() - began, 1)})
            print(f"  store: {samples[-1]['events']:,} events, RSS +{samples[-1]['rss_bytes'] / 1e6:.0f} MB, "
                  f"disk {samples[-1]['store_bytes'] / 1e6:.1f} MB", flush=True)
        store.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return {"world": args.store_world, "rss_baseline_bytes": base, "samples": samples,
            "rss": fit(samples, "rss_bytes"), "store": fit(samples, "store_bytes"),
            "events_reached": samples[-1]["events"]}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world")
    ap.add_argument("--world", default=None, help="world fed to the worker (default 10k; quick tiny)")
    ap.add_argument("--store-world", default=None, help="world applied to the store (default 100k; quick tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker-events", type=int, default=None, help="default 200000 (quick: all)")
    ap.add_argument("--step", type=int, default=None, help="events per worker sample (default 20000)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the worker series (default 600)")
    ap.add_argument("--store-events", type=int, default=None, help="default 1000000 (quick: all)")
    ap.add_argument("--store-step", type=int, default=None, help="events per store sample (default 100000)")
    ap.add_argument("--series", default="worker,store")
    add_model_args(ap)
    args = ap.parse_args(argv)
    q = args.quick
    return fill_defaults(args, {"world": "tiny" if q else "10k", "store_world": "tiny" if q else "100k",
                 "worker_events": 10 ** 9 if q else 200_000, "step": 300 if q else 20_000,
                 "budget": 120.0 if q else 600.0, "store_events": 10 ** 9 if q else TARGET,
                 "store_step": 300 if q else 100_000, **model_defaults(q)})


def main(argv=None) -> int:
    args = parse_args(argv)
    benchmark_model(args)
    t0 = time.perf_counter()
    series = [s.strip() for s in args.series.split(",") if s.strip()]
    result = {"target_events": TARGET}
    if "worker" in series:
        result["worker"] = worker_series(args)
    if "store" in series:
        result["store"] = store_series(args)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    for name in ("worker", "store"):
        if name in result:
            r = result[name]
            print(f"{name}: {r['events_reached']:,} events; RSS growth/100k {r['rss']['per_100k']}, "
                  f"store growth/100k {r['store']['per_100k']}", flush=True)
    write_json(args.out / "memory.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
