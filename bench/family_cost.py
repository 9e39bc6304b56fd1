"""What each servable family costs the stream: scoring and explaining a k-hop union, in-process.

For one simulated world it fits the GNN, ``lgbm_agg`` and their hybrid on the same split (the
GNN on a short schedule: the cost of a forward does not depend on how long it trained), then
times, per family, ``Scorer.score`` on the exact 2-hop union of ``--leads`` random leads at the
test cutoff and ``explain_signed`` of ``--explain`` of them, ``--batches`` times each (medians
in ms). It prints figures; it never asserts (docs/stream.md, "Known limits").

With ``--models DIR`` it fits nothing and times that registry's champion on unions at the
world's last day instead (``--models bench`` is the GNN the speed benchmarks score with,
``bench/common.py``). For a GNN it also prints the two parts of a score: encoding the union's
feature rows and the forward pass (docs/model.md#scoring-modelscorerpy).

Usage::

    python bench/family_cost.py --size small --leads 12,100 --batches 15
    python bench/family_cost.py --size 10k --models bench --leads 100,1000
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
    ap.add_argument("--models", default=None,
                    help="time this registry's champion, fitting nothing ('bench': the speed benchmarks' GNN)")
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
    if args.models:
        families = {"champion": _champion(args.models, Path(args.data))}
        t, where = data_span(events)[1], "last day"
    else:
        split = build_split(store, parse_task(DEFAULT_TASK), *data_span(events), SplitOptions(max_train_cutoffs=3))
        families = fit_candidates(split.train, split.valid, ["gnn", "lgbm_agg", "hybrid"],
                                  TrainOptions.of(epochs=args.epochs))
        t, where = split.plan.test[0], "test cutoff"
    ids = sorted(store.snapshot(t).node_ids["contact"])
    rng = np.random.default_rng(args.seed)
    print(f"{args.size} world, seed {args.seed}, {where}; medians of {args.batches} batches (ms)")
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
                  f"explain {args.explain} {statistics.median(explain):7.1f}{_parts(model, graphs, batches)}",
                  flush=True)
    return 0


def _champion(models: str, cache: Path):
    """The champion of registry ``models`` ('bench': the speed benchmarks' cached GNN)."""
    from leadpulse.model.registry import ModelRegistry

    if models == "bench":
        from leadpulse.bench.common import benchmark_model
        registry = benchmark_model(argparse.Namespace(models=None, model_world="tiny", epochs=10, cache=cache))
    else:
        registry = Path(models)
    return ModelRegistry(registry).load()


def _parts(model, graphs, batches) -> str:
    """For a GNN: medians of encoding the union's rows and of the forward pass ("" otherwise)."""
    from leadpulse.model.features import encode_graph, to_hetero_data
    from leadpulse.model.gnn import GNNLeadModel

    if not isinstance(model, GNNLeadModel):
        return ""
    encode, forward = [], []
    for g, b in zip(graphs, batches):
        t0 = time.perf_counter()
        encoded = encode_graph(g, model.spec)
        t1 = time.perf_counter()
        data, seeds = to_hetero_data(g, model.spec, b, encoded=encoded)
        t2 = time.perf_counter()
        model.logits(data, seeds)
        encode.append((t1 - t0) * 1e3)
        forward.append((time.perf_counter() - t2) * 1e3)
    return f"  (encode {statistics.median(encode):.1f}, forward {statistics.median(forward):.1f})"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
