"""What each servable family costs the stream: scoring and explaining a k-hop union, in-process.

For one simulated world it fits the GNN, ``lgbm_agg`` and their hybrid on the same split (the
GNN on a short schedule: the cost of a forward does not depend on how long it trained), then
times, per family, ``Scorer.score`` on the exact 2-hop union of ``--leads`` random leads at the
test cutoff and ``explain_signed`` of ``--explain`` of them, ``--batches`` times each (medians
in ms). It prints figures; it never asserts (docs/stream.md, "Known limits").

Usage::

    python bench/family_cost.py --size small --leads 12,100 --batches 15
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/tmp/leadpulse-bench", help="where simulated worlds are cached")
    ap.add_argument("--leads", default="12,100", help="comma-separated leads per batch")
    ap.add_argument("--explain", type=int, default=8, help="leads explained per batch")
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=5, help="the GNN's training epochs")
    args = ap.parse_args(argv)

    import torch

    from leadpulse.bench.accuracy import world_dir
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import SplitOptions, build_split, data_span
    from leadpulse.model.explain import explain_signed
    from leadpulse.model.pipeline import fit_candidates
    from leadpulse.model.scorer import Scorer
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    from leadpulse.model.train import TrainOptions
    from leadpulse.schemas.tables import read_tables

    torch.set_num_threads(1)  # as a worker scores (stream.worker: num_threads=1)
    events, _ = read_tables(world_dir(Path(args.data), args.size, args.seed))
    store = MemoryGraphStore()
    store.apply(sorted(events, key=lambda e: e.event_time))
    split = build_split(store, parse_task(DEFAULT_TASK), *data_span(events), SplitOptions(max_train_cutoffs=3))
    families = fit_candidates(split.train, split.valid, ["gnn", "lgbm_agg", "hybrid"],
                              TrainOptions.of(epochs=args.epochs))
    t = split.plan.test[0]
    ids = sorted(store.snapshot(t).node_ids["contact"])
    rng = np.random.default_rng(args.seed)
    print(f"{args.size} world, seed {args.seed}, test cutoff; medians of {args.batches} batches (ms)")
    for n in (int(x) for x in args.leads.split(",")):
        batches = [[str(c) for c in rng.choice(ids, n, replace=False)] for _ in range(args.batches)]
        graphs = [store.subgraph(b, t, hops=2) for b in batches]
        for name, model in families.items():
            scorer = Scorer(model)
            scorer.score(graphs[0], batches[0])  # warm-up: lazy imports, first allocations
            score, explain = [], []
            for g, b in zip(graphs, batches):
                t0 = time.perf_counter()
                batch = scorer.score(g, b)
                t1 = time.perf_counter()
                # as the stream explains: with the rows the scoring built (each family's own)
                explain_signed(model, g, b[:args.explain], top_k=5, encoded=batch.encoded)
                score.append((t1 - t0) * 1e3)
                explain.append((time.perf_counter() - t1) * 1e3)
            print(f"{n:5d} leads  {name:9s} score {statistics.median(score):7.1f}  "
                  f"explain {args.explain} {statistics.median(explain):7.1f}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
