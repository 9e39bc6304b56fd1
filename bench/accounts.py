"""Account stage in-process: the compute ceiling of the worker, without Kafka or Faust.

The worker's stage 2 (``stream.accounts.AccountProcessor``) on a real RocksDB graph store and
score book with the benchmark model: the world's pre-history is applied first, then its next
``--events`` events are fed as account-topic records in batches of ``--batch`` records (split
over ``--partitions`` by a hash of the account, as the agent splits a taken batch), each batch
applied, its affected leads scored, explained within the budget and committed, as the agent
does. No broker, no serialisation to Kafka, no ingest stage: what this rate leaves to the rest
of the worker is the price of the plumbing (compare ``bench/stream.py``).

Reported per batch size: events/s, leads scored and score changes published per second, and
the share of wall time in ``apply`` and in subgraph + scoring (from the worker's own
Prometheus histograms; the rest is affected-lead search, explanations and bookkeeping).

``--phases K`` splits the timed events into K consecutive phases and reports each one's rate
and leads scored per event: whether an event costs more as the history behind it grows (the
last phase's rate over the first's). ``--start-at N`` applies the N events after the
pre-history first, without scoring them, so a short timed run measures the cost per event
deep in the history (its leads start unscored: every first score is published).

    python bench/accounts.py                     # 10k world, 5,000 events, batches of 100 and 1,000
    python bench/accounts.py --quick             # tiny world
    python bench/accounts.py --world 100k --events 300000 --batches 1000 --phases 6 --name accounts-large
    python bench/accounts.py --world 100k --start-at 1000000 --events 20000 --batches 1000 --name accounts-deep
    python bench/accounts.py --world 100k --start-at 500000 --events 300000 --batches 1000 --phases 6 --name accounts-flat
"""
from __future__ import annotations

import argparse
import cProfile
import shutil
import tempfile
import time
import zlib
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


def account_records(events: list, partitions: int, first_offset: int, company_of: dict) -> dict[int, list]:
    """Account-topic records of ``events`` by partition (the account is the company, or the
    company of the contact's newest version seen so far: ``company_of``, as the router keeps it)."""
    from leadpulse.schemas.topics import input_spec_for_topic
    from leadpulse.stream.ingest import RawRecord
    from leadpulse.stream.router import Forward
    out: dict[int, list] = {}
    for k, e in enumerate(events):
        if e.kind == "contact":
            company_of[e.contact_id] = e.company_id
        account = getattr(e, "company_id", None) or company_of.get(getattr(e, "contact_id", ""), "") or "none"
        p = zlib.crc32(account.encode()) % partitions
        wire = Forward(account, input_spec_for_topic(e.kind).name, e).wire()
        out.setdefault(p, []).append(RawRecord("leadpulse.accounts", p, first_offset + k, None, wire))
    return out



def _hist_sum(hist) -> float:
    return next(s.value for m in hist.collect() for s in m.samples if s.name.endswith("_sum"))


def _feed(proc, events: list, lo: int, hi: int, partitions: int, company_of: dict, chunk: int = 5000) -> None:
    """Process and commit ``events[lo:hi]`` in chunks, untimed (the history before what is measured)."""
    for start in range(lo, hi, chunk):
        end = min(start + chunk, hi)
        for p, recs in sorted(account_records(events[start:end], partitions, start, company_of).items()):
            proc.commit_published(proc.process(recs, p))


def _phase_ends(n: int, batch: int, phases: int) -> set[int]:
    """Event counts at which each phase ends: whole batches, the last at ``n``."""
    per = max(batch, -(-n // max(phases, 1) // batch) * batch)
    return {min(n, k * per) for k in range(1, max(phases, 1) + 1)} | {n}


def _phase(mark: tuple, done: int, scored: float) -> dict:
    """One phase's figures since ``mark`` = (events, wall clock, CPU clock, leads scored)."""
    events, wall, cpu = done - mark[0], time.perf_counter() - mark[1], time.process_time() - mark[2]
    return {"events": events, "ends_at": done, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "events_per_s": round(events / wall, 1), "events_per_cpu_s": round(events / cpu, 1),
            "leads_per_event": round((scored - mark[3]) / events, 2)}


def measure(events: list, pre: int, args: argparse.Namespace, scorer, batch: int) -> dict:
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.state import KVState
    work = Path(tempfile.mkdtemp(prefix="lp-bench-accounts-"))
    company_of: dict = {}
    try:
        store, book = RocksDBGraphStore(work / "graph"), KVState(work / "scores", cache_entries=args.book_cache)
        proc = AccountProcessor(store, book, scorer, ScoringOptions(tier_hysteresis=args.tier_hysteresis,
                                                                     max_batch_leads=args.max_batch_leads),
                                metrics=Metrics())
        _feed(proc, events, 0, pre, args.partitions, company_of)  # pre-history, untimed
        if args.start_at:  # history to meet, applied without scoring (untimed): nothing is scored yet
            proc.scorer = None
            _feed(proc, events, pre, pre + args.start_at, args.partitions, company_of)
            proc.scorer, pre = scorer, pre + args.start_at
        m = proc.metrics = Metrics()
        live = events[pre:pre + args.events]
        published, alerts = 0, {}
        prof = cProfile.Profile() if args.profile else None
        if prof is not None:
            prof.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        phases, ends = [], _phase_ends(len(live), batch, args.phases)
        mark = (0, t0, c0, 0.0)
        for lo in range(0, len(live), batch):
            for p, recs in sorted(account_records(live[lo:lo + batch], args.partitions, pre + lo, company_of).items()):
                out = proc.process(recs, p)
                proc.commit_published(out)
                published += len(out.scores)
                for a in out.alerts:
                    alerts[a.kind] = alerts.get(a.kind, 0) + 1
            done = min(lo + batch, len(live))
            if done in ends:
                scored = _hist_sum(m.batch_size)
                phases.append(_phase(mark, done, scored))
                mark = (done, time.perf_counter(), time.process_time(), scored)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if prof is not None:  # the live part only: the pre-history's apply is not what is measured
            prof.disable()
            prof.dump_stats(f"{args.profile}.{batch}")
        scores = _hist_sum(m.batch_size)
        store.close()
        book.close()
        return {"batch": batch, "events": len(live), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                "events_per_s": round(len(live) / wall, 1), "leads_scored_per_s": round(scores / wall, 1),
                "published_per_s": round(published / wall, 1), "alerts": alerts,
                "apply_share": round(_hist_sum(m.apply_seconds) / wall, 3),
                "score_share": round(_hist_sum(m.score_seconds) / wall, 3),
                **({"phases": phases, "last_over_first": round(phases[-1]["events_per_s"] / phases[0]["events_per_s"], 3)}
                   if len(phases) > 1 else {})}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv=None) -> argparse.Namespace:
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.state import CACHE_ENTRIES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world, 300 events")
    ap.add_argument("--world", default=None, help="tiny, small, 10k or 100k (default 10k; quick: tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--events", type=int, default=None, help="live events fed (default 5000; quick 300)")
    ap.add_argument("--batches", default=None, help="records per taken batch, comma-separated (default 100,1000)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the worker)")
    ap.add_argument("--max-batch-leads", type=int, default=ScoringOptions.max_batch_leads,
                    help="leads per scoring chunk (default the worker's, LEADPULSE_BATCH_SIZE)")
    ap.add_argument("--tier-hysteresis", type=float, default=ScoringOptions.tier_hysteresis,
                    help="LEADPULSE_TIER_HYSTERESIS of the run (default the worker's; 0 = alert on every tier change)")
    ap.add_argument("--book-cache", type=int, default=CACHE_ENTRIES,
                    help="decoded score-book entries cached (default 50000, the worker's; 0 = none)")
    ap.add_argument("--phases", type=int, default=1,
                    help="split the timed events into this many phases, each reported (default 1)")
    ap.add_argument("--start-at", type=int, default=0, metavar="N",
                    help="apply the N events after the pre-history first, unscored and untimed, so the timed events "
                         "meet that much history (their leads start without a score); default 0")
    ap.add_argument("--name", default="accounts", help="the JSON's file stem in --out (default accounts)")
    ap.add_argument("--profile", metavar="PATH", help="cProfile the timed part into PATH.<batch> (slows it down)")
    add_model_args(ap)
    args = ap.parse_args(argv)
    q = args.quick
    return fill_defaults(args, {"world": "tiny" if q else "10k", "events": 300 if q else 5000,
                                "batches": "100" if q else "100,1000", **model_defaults(q)})


def main(argv=None) -> int:
    import torch

    from leadpulse.schemas.tables import read_tables
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    scorer = load_scorer(benchmark_model(args))
    events, _ = read_tables(ensure_world(args.world, args.seed, args.cache))
    events.sort(key=lambda e: e.event_time)
    pre = next((i for i, e in enumerate(events) if e.kind in ("activity", "order", "opportunity")), len(events))
    rows = []
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
        row = measure(events, pre, args, scorer, batch)
        rows.append(row)
        print(f"  batch {batch:>5}: {row['events_per_s']:,.0f} events/s, {row['leads_scored_per_s']:,.0f} leads "
              f"scored/s, {row['published_per_s']:,.0f} published/s; apply {row['apply_share']:.0%}, "
              f"subgraph+score {row['score_share']:.0%} of wall; alerts {row['alerts']}", flush=True)
        for ph in row.get("phases", []):
            print(f"    events to {ph['ends_at']:>7,}: {ph['events_per_s']:,.0f} events/s "
                  f"({ph['events_per_cpu_s']:,.0f} per CPU second), {ph['leads_per_event']} leads per event",
                  flush=True)
    write_json(args.out / f"{args.name}.json", {"world": args.world, "seed": args.seed, "pre_history_events": pre,
                                                "start_at": args.start_at,
                                                "partitions": args.partitions, "threads": args.threads,
                                                "tier_hysteresis": args.tier_hysteresis,
                                                "book_cache": args.book_cache,
                                                "max_batch_leads": args.max_batch_leads, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
