"""Recovery benchmark: SIGKILL a worker mid-stream, restart it, time the way back.

A publisher replays the world at ``--rate`` events/s (after its pre-history at full speed) and
keeps going while the worker is dead, as producers do. ``--kills`` times: SIGKILL the worker
(by its pid), restart it at once on the same data directory, and measure

* kill → first new score: the first ``leads.scores`` record stamped after the killed process
  was reaped (so none of its own last records count);
* kill → HTTP up, and kill → first event consumed by the new process;
* catch-up: the new process resumes from the positions stored with its state (read from its
  router store while it is down); it has caught up when that position plus what it consumed
  reaches what was sent. Catch-up rate = events consumed / seconds from its first consumed
  event to caught up (the publisher keeps sending meanwhile, so this is the rate while behind).
  The default rate (100 events/s) sits below the worker's sustained rate on this machine
  (bench/results/REPORT.md, "Throughput and latency"): above it the worker never catches up and
  only kill → first new score is measured (docs/benchmarks.md#recovery).

    python bench/recovery.py               # 10k world, 3 kills (~10 min)
    python bench/recovery.py --quick       # tiny world, 1 kill
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from leadpulse.bench.common import (
    Service,
    add_model_args,
    benchmark_model,
    ensure_world,
    fill_defaults,
    model_defaults,
    start_broker,
    wait_for,
    write_json,
)
from leadpulse.bench.stream import Collector, Phase, load_stream, send
from leadpulse.stream.connection import KafkaConnection


class Publisher:
    """Sends phases in a thread of its own; ``sent`` counts acknowledged-or-pending sends."""

    def __init__(self, bootstrap: KafkaConnection, prefix: str, phases: list[Phase]):
        self.phases, self.sent, self.done = phases, 0, threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(bootstrap, prefix)), daemon=True)
        self._thread.start()

    @property
    def sent_now(self) -> int:
        return sum(len(p.sent_ms) for p in self.phases)

    async def _run(self, bootstrap: KafkaConnection, prefix: str) -> None:
        from leadpulse.stream.publish import new_producer, start_producer
        producer = new_producer(bootstrap, client_id="leadpulse-bench")
        await start_producer(producer, bootstrap)
        try:
            for phase in self.phases:
                await send(producer, prefix, phase)
        finally:
            await producer.stop()
            self.done.set()


def stored_position(svc: Service) -> int:
    """Input events whose routing the (dead) worker committed with its state."""
    from leadpulse.stream.state import KVState
    inputs = {svc.topic(t) for t in ("crm.companies", "crm.contacts", "crm.activities",
                                     "crm.opportunities", "crm.orders")}
    state = KVState(svc.data_dir / "worker" / "router")
    try:
        return sum(v for (topic, _), v in state.positions().items() if topic in inputs)
    finally:
        state.close()


def one_kill(svc: Service, pub: Publisher, collector: Collector, timeout: float) -> dict:
    consumed_before = svc.metric("leadpulse_events_consumed_total")
    t_kill = time.time()
    svc.kill()
    # a record the dying process stamped in its last millisecond is not a new score: count only
    # those stamped after it was reaped
    dead_ms = int(time.time() * 1000) + 1
    stored = stored_position(svc)
    svc.start()
    t_http = time.time()
    t_first, caught, got = None, None, 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = svc.metric("leadpulse_events_consumed_total") or 0.0
        now = time.time()
        if got > 0 and t_first is None:
            t_first = now
        if stored + got >= pub.sent_now - 5:  # a few in flight between send and poll
            caught = now
            break
        time.sleep(0.2)
    first_score = min((ts for ts, _ in collector.records if ts >= dead_ms), default=None)
    if first_score is None:  # scores may still be on their way to the collector
        wait_for(lambda: any(ts >= dead_ms for ts, _ in collector.records), 10)
        first_score = min((ts for ts, _ in collector.records if ts >= dead_ms), default=None)
    span = (caught - t_first) if caught and t_first else None
    return {"consumed_before_kill": consumed_before, "stored_position": stored,
            "kill_to_http_s": round(t_http - t_kill, 3),
            "kill_to_first_consumed_s": round(t_first - t_kill, 3) if t_first else None,
            "kill_to_first_score_s": round(first_score / 1000 - t_kill, 3) if first_score else None,
            "caught_up": caught is not None,
            "kill_to_caught_up_s": round(caught - t_kill, 3) if caught else None,
            "events_replayed_and_caught_up": int(got),
            "catch_up_events_per_s": round(got / span, 1) if span and span > 0 else None}


def run(args: argparse.Namespace) -> dict:
    tables = ensure_world(args.world, args.seed, args.cache)
    preload, pool = load_stream(tables)
    kills = []
    with contextlib.ExitStack() as stack:
        bootstrap = start_broker(stack)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lp-bench-recovery-")))
        svc = Service(bootstrap, work / "worker", partitions=args.partitions, model_dir=args.models)
        svc.ensure_topics()
        svc.start()
        stack.callback(svc.kill)
        collector = Collector(bootstrap, svc.topic("leads.scores"), keep=lambda v: None)
        stack.callback(collector.stop)
        pub = Publisher(bootstrap, svc.prefix, [Phase("preload", None, preload), Phase("live", args.rate, pool)])
        wait_for(lambda: (svc.metric("leadpulse_events_consumed_total") or 0) >= len(preload), args.timeout)
        time.sleep(args.warm)
        for k in range(args.kills):
            if pub.done.is_set():
                print("  the world ran out of events: fewer kills than asked", flush=True)
                break
            got = one_kill(svc, pub, collector, args.timeout)
            kills.append(got)
            print(f"  kill {k + 1}: first new score after {got['kill_to_first_score_s']} s, caught up after "
                  f"{got['kill_to_caught_up_s']} s at {got['catch_up_events_per_s']} events/s", flush=True)
            if k + 1 < args.kills:
                time.sleep(args.gap)
    med = lambda key: statistics.median([k[key] for k in kills if k[key] is not None] or [float("nan")])  # noqa: E731
    return {"world": args.world, "seed": args.seed, "rate": args.rate, "partitions": args.partitions,
            "timeout_s": args.timeout,
            "kills": kills,
            "summary": {"kill_to_first_score_s_median": med("kill_to_first_score_s") if kills else None,
                        "kill_to_caught_up_s_median": med("kill_to_caught_up_s") if kills else None,
                        "catch_up_events_per_s_median": med("catch_up_events_per_s") if kills else None}}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world, one kill")
    ap.add_argument("--world", default=None, help="default 10k (quick: tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=None, help="publisher rate, events/s (default 100, below the worker's sustained rate)")
    ap.add_argument("--kills", type=int, default=None, help="default 3 (quick 1)")
    ap.add_argument("--warm", type=float, default=None, help="seconds of live stream before the first kill")
    ap.add_argument("--gap", type=float, default=15.0, help="seconds between catching up and the next kill")
    ap.add_argument("--timeout", type=float, default=300.0, help="longest wait for a catch-up")
    ap.add_argument("--partitions", type=int, default=4)
    add_model_args(ap)
    args = ap.parse_args(argv)
    q = args.quick
    return fill_defaults(args, {"world": "tiny" if q else "10k", "rate": 100.0, "kills": 1 if q else 3,
                 "warm": 2.0 if q else 20.0, **model_defaults(q)})


def main(argv=None) -> int:
    args = parse_args(argv)
    benchmark_model(args)
    t0 = time.perf_counter()
    result = run(args)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print("summary:", result["summary"], flush=True)
    write_json(args.out / "recovery.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
