"""Incremental vs full recompute, per event, on worlds of ~10k and ~100k contacts.

In-process (a compute benchmark, no Kafka): the world minus its last ``--events`` events is
applied to a RocksDB graph store (the worker's store); then each held-out event is applied
alone and scored two ways, as of the watermark (the newest applied event time, as the worker):

* incremental — what the worker does: ``affected_leads`` of the event, their exact 2-hop
  ``subgraph``, ``Scorer.score`` of the affected leads;
* full — ``snapshot`` of the whole graph as of the same time, ``Scorer.score`` of every lead.

Reported per world: median time of each, the speedup (full / incremental, median of the
per-event ratios and ratio of the medians), affected leads per event and the largest absolute
difference between the incremental and the full score of the same lead (invariant 2 says
≤ 1e-5). Both use one torch thread, as the worker does.

    python bench/incremental.py                       # 10k and 100k worlds (~20-30 min)
    python bench/incremental.py --quick               # tiny world
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from leadpulse.bench.common import (
    add_model_args,
    benchmark_model,
    ensure_world,
    fill_defaults,
    load_scorer,
    model_defaults,
    write_json,
)


def load_store(path: Path, events: list, batch: int = 5000):
    """A RocksDB graph store holding ``events`` (applied in batches, as the worker would)."""
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    store = RocksDBGraphStore(path)
    for lo in range(0, len(events), batch):
        store.apply(events[lo:lo + batch])
    return store


def measure_world(name: str, args: argparse.Namespace, scorer) -> dict:
    from leadpulse.schemas.tables import read_tables
    from leadpulse.schemas.timeutil import to_micros
    tables = ensure_world(name, args.seed, args.cache)
    events, _ = read_tables(tables)
    held = args.events_100k if name in ("100k", "large") else args.events
    history, tail = events[:-held], events[-held:]
    path = Path(tempfile.mkdtemp(prefix="lp-bench-incr-"))
    try:
        t0 = time.perf_counter()
        store = load_store(path / "graph", history)
        load_s = time.perf_counter() - t0
        mark = max(to_micros(e.event_time) for e in history)
        contacts_n = len(store.node_ids("contact", mark))
        print(f"  {name}: {len(history):,} events applied in {load_s:.0f} s ({contacts_n:,} contacts); "
              f"measuring {len(tail)} events", flush=True)
        rows = []
        for ev in tail:
            effects = store.apply([ev])
            mark = max(mark, to_micros(ev.event_time))
            t1 = time.perf_counter()
            affected = sorted(store.affected_leads([replace(e, changed=True) for e in effects], mark, hops=2))
            inc_scores = {}
            if affected:
                graph = store.subgraph(affected, mark, hops=2)
                batch = scorer.score(graph, affected)
                inc_scores = dict(zip(batch.contact_ids, batch.scores.tolist()))
            inc_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            snap = store.snapshot(mark)
            ids = list(snap.node_ids.get("contact", []))
            full = scorer.score(snap, ids)
            full_s = time.perf_counter() - t2
            full_scores = dict(zip(full.contact_ids, full.scores.tolist()))
            diff = max((abs(s - full_scores[c]) for c, s in inc_scores.items() if c in full_scores), default=0.0)
            rows.append({"kind": ev.kind, "affected": len(affected), "incremental_s": inc_s, "full_s": full_s,
                         "leads_scored_full": len(ids), "max_abs_diff": diff})
            print(f"    {ev.kind:12s} affected {len(affected):4d}  incremental {inc_s * 1000:8.1f} ms  "
                  f"full {full_s:7.2f} s  max|diff| {diff:.2e}", flush=True)
        store.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    inc = [r["incremental_s"] for r in rows]
    full = [r["full_s"] for r in rows]
    return {"world": name, "tables": str(tables), "events_loaded": len(history), "load_seconds": round(load_s, 1),
            "contacts": contacts_n, "events_measured": len(rows),
            "incremental_ms_median": round(statistics.median(inc) * 1000, 3),
            "full_ms_median": round(statistics.median(full) * 1000, 1),
            "speedup_median_of_ratios": round(statistics.median(f / max(i, 1e-9) for f, i in zip(full, inc)), 1),
            "speedup_ratio_of_medians": round(statistics.median(full) / max(statistics.median(inc), 1e-9), 1),
            "affected_median": statistics.median(r["affected"] for r in rows),
            "max_abs_diff": max(r["max_abs_diff"] for r in rows), "per_event": rows}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world, 5 events")
    ap.add_argument("--worlds", default=None, help="comma-separated: tiny, small, 10k, 100k (default 10k,100k)")
    ap.add_argument("--events", type=int, default=None, help="held-out events measured per world (default 10)")
    ap.add_argument("--events-100k", type=int, default=None, help="the same on the 100k world (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the worker)")
    add_model_args(ap)
    args = ap.parse_args(argv)
    q = args.quick
    return fill_defaults(args, {"worlds": "tiny" if q else "10k,100k", "events": 5 if q else 10,
                                "events_100k": 3, **model_defaults(q)})


def main(argv=None) -> int:
    import torch
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    scorer = load_scorer(benchmark_model(args))
    t0 = time.perf_counter()
    worlds = []
    for name in [w.strip() for w in args.worlds.split(",") if w.strip()]:
        w = measure_world(name, args, scorer)
        worlds.append(w)
        print(f"{w['world']}: {w['contacts']:,} contacts; incremental {w['incremental_ms_median']} ms, "
              f"full {w['full_ms_median']} ms per event; speedup x{w['speedup_median_of_ratios']}; "
              f"max |incremental - full| {w['max_abs_diff']:.2e}", flush=True)
        # after every world: a long run stopped midway still leaves what it measured
        write_json(args.out / "incremental.json", {"threads": args.threads, "model_version": scorer.version,
                                                   "worlds": worlds, "wall_seconds": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
