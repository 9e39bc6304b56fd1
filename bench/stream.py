"""Stream benchmark: end-to-end events/s and event→publish latency of the worker, beside a Faust
pass-through agent measured in the same run, on the same broker and the same event stream.

For each app (``leadpulse worker``, ``bench.passthrough``) one deployment (its own topics and
consumer group) goes through the same phases:

1. *preload*: the world's pre-history (companies and contacts older than the first activity)
   at full speed, until processed (it warms the graph, the model and the group join);
2. one phase per fixed rate (default 250, 1,000, 2,000 events/s for ``--duration`` s each),
   then a *max* phase: ``--max-events`` sent as fast as the producer goes. Each phase takes the
   next events of the world in event-time order and waits until they are processed (bounded by
   ``--drain-timeout``) before the next one starts. A phase not processed by then is waited
   for, untimed (bounded by ``--catch-up-timeout``), so the next phase does not start on its
   backlog: every phase's rate and latencies are its own.

Latency (one method for both apps): wall-clock Kafka timestamp of the output record minus the
wall-clock send time of the input record that caused it (both stamped on this machine). The
worker's outputs name their cause (``leads.scores`` ``cause`` = topic:entity id); an event's
latency is its first score publication; events that moved no score by more than epsilon have
no sample (their count is reported). The pass-through's output is the input itself.
Throughput of a phase: its events / (last output caused by them − first send of the phase), the
last output being the last one before the phase was found done (``Settled``: an activity held by
the router until its contact arrives is scored phases later; ``outputs_after_settled`` counts them).

    python bench/stream.py                      # 10k-contact world, 60 s per rate (~15-25 min)
    python bench/stream.py --quick              # tiny world, ~1 s per phase
    python bench/stream.py --world large --rates 250,1000 --duration 45 --max-events 30000 --name stream-large
                                                # 100k-contact world (~15 min)
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from leadpulse.bench.common import (
    Service,
    Settled,
    add_model_args,
    benchmark_model,
    ensure_world,
    fill_defaults,
    model_defaults,
    percentiles,
    start_broker,
    write_json,
)
from leadpulse.stream.connection import KafkaConnection

CDF_POINTS = 200


@dataclass(frozen=True)
class Msg:
    topic: str  # contract (default) name; the deployment adds its prefix
    key: bytes
    value: bytes
    cause: str  # what the worker's scores name as their cause


@dataclass
class Phase:
    name: str
    rate: Optional[float]  # None = as fast as possible
    msgs: list
    sent_ms: list = field(default_factory=list)
    send_seconds: float = 0.0
    drained: bool = False
    #: for a phase not processed within the drain timeout: whether the worker caught up with it
    #: before the next phase (None: not waited for), and how long that took
    caught_up: Optional[bool] = None
    catch_up_seconds: Optional[float] = None
    settled_ms: Optional[int] = None  # wall time the app was found done with the phase
    drain_seconds: float = 0.0
    polls: list = field(default_factory=list)  # (wall time, events applied or output so far)
    poll_ms: list = field(default_factory=list)  # how long each /metrics read took (worker)


def load_stream(tables: Path) -> tuple[list[Msg], list[Msg]]:
    """(pre-history, the rest) of the world's events as wire messages, in event-time order."""
    from leadpulse.schemas.tables import event_json, event_key, read_tables
    from leadpulse.schemas.topics import input_spec_for_topic
    events, _ = read_tables(tables)
    behaviour = [e.event_time for e in events if e.kind in ("activity", "order", "opportunity")]
    first = min(behaviour) if behaviour else events[-1].event_time
    msgs = []
    for ev in events:
        topic = input_spec_for_topic(ev.kind).name
        msgs.append(Msg(topic, event_key(ev), event_json(ev), f"{topic}:{ev.entity_id}"))
    cut = next((i for i, ev in enumerate(events) if ev.event_time >= first), len(events))
    return msgs[:cut], msgs[cut:]


def plan_phases(pool: list[Msg], rates: list[float], duration: float, max_events: int) -> list[Phase]:
    """Fixed-rate phases of ``duration`` s and a max phase; shrunk alike when the pool is short."""
    wanted = [max(1, int(r * duration)) for r in rates] + [max_events]
    scale = min(1.0, len(pool) / sum(wanted))
    counts = [max(1, int(n * scale)) for n in wanted]
    phases, at = [], 0
    for name, rate, n in zip([f"{r:g}" for r in rates] + ["max"], list(rates) + [None], counts):
        phases.append(Phase(name, rate, pool[at:at + n]))
        at += n
    return [p for p in phases if p.msgs]


class Collector:
    """Reads the output topic in its own thread: (timestamp ms, ``keep(value)``) of every record.

    The worker publishes several scores per event: keeping only their cause (not the JSON)
    keeps the benchmark's memory and CPU small beside the process it measures.
    """

    def __init__(self, bootstrap: KafkaConnection, topic: str, keep=lambda value: value):
        self.records: list[tuple[int, object]] = []
        self.kept = 0  # records whose ``keep`` is not None (for the worker: caused by an event)
        self._keep = keep
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(bootstrap, topic)), daemon=True)
        self._thread.start()

    async def _run(self, bootstrap: KafkaConnection, topic: str) -> None:
        from leadpulse.stream.consume import tail
        gen = tail(bootstrap, [topic], poll_ms=100, metadata_timeout=30)
        try:
            async for batch in gen:
                got = [(r.timestamp, self._keep(r.value)) for r in batch]
                self.records.extend(got)
                self.kept += sum(1 for _, v in got if v is not None)
                if self._stop.is_set():
                    return
        finally:
            await gen.aclose()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def cause_of(value: bytes) -> Optional[str]:
    """The ``cause`` of a score record; None for decay and model-update rescoring (no event)."""
    at = value.find(b'"cause":"')
    if at < 0:
        return None
    cause = value[at + 9:value.index(b'"', at + 9)].decode()
    return None if cause.split(":", 1)[0] in ("decay", "model_update") else cause


async def send(producer, prefix: str, phase: Phase) -> None:
    """Send ``phase.msgs`` at ``phase.rate`` (or at once), stamping each with its send time."""
    loop = asyncio.get_running_loop()
    start, pending = loop.time(), []
    t0 = time.perf_counter()
    for i, m in enumerate(phase.msgs):
        if phase.rate:
            delay = start + i / phase.rate - loop.time()
            if delay > 0.001:
                if pending:
                    await asyncio.gather(*pending)
                    pending.clear()
                    delay = start + i / phase.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        now_ms = int(time.time() * 1000)
        phase.sent_ms.append(now_ms)
        pending.append(await producer.send(prefix + m.topic, m.value, key=m.key, timestamp_ms=now_ms))
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    phase.send_seconds = time.perf_counter() - t0


async def drain(kind: str, svcs: list[Service], collector: Collector, phase: Phase, target: int,
                timeout: float, quiet: float) -> bool:
    """Poll until ``target`` events went through the app: for the worker until its account
    stage applied them and published every score they caused (``Settled``: stage 1 having
    consumed them is not enough — a phase started on top of stage 2's backlog, a window that
    takes seconds to score on a big world, would be charged with its latency); for the
    pass-through until its outputs arrived. Record the polls (they give the rate while behind)."""
    settled = Settled(svcs, target, quiet) if kind == "worker" else None
    deadline = time.monotonic() + timeout
    while True:
        began = time.perf_counter()
        if settled is None:
            done = len(collector.records) >= target
            phase.polls.append((time.time(), float(len(collector.records))))
        else:
            done = await asyncio.to_thread(settled)
            phase.poll_ms.append((time.perf_counter() - began) * 1000)  # a read that waits for the worker's loop
            if settled.applied is not None:
                phase.polls.append((time.time(), settled.applied))
        if done:
            phase.settled_ms = int(time.time() * 1000)
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)


async def run_app(kind: str, bootstrap: KafkaConnection, work: Path, preload: list[Msg], phases: list[Phase],
                  args: argparse.Namespace) -> dict:
    """One deployment of ``kind`` through the preload and every phase; raw measurements."""
    from leadpulse.stream.publish import new_producer, start_producer
    argv = [sys.executable, "-m", "leadpulse.bench.passthrough"] if kind == "passthrough" else None
    first = Service(bootstrap, work / kind / "p0", partitions=args.partitions, model_dir=args.models, argv=argv)
    # more processes of the deployment: the same topics and consumer group, their own state
    svcs = [first] + [Service(bootstrap, work / kind / f"p{i}", prefix=first.prefix, partitions=args.partitions,
                              model_dir=args.models, argv=argv) for i in range(1, args.processes)]
    out_topic = first.topic("leads.scores") + (".passthrough" if kind == "passthrough" else "")
    first.ensure_topics(extra=("leads.scores.passthrough",))
    for svc in svcs:
        await asyncio.to_thread(svc.start)
    collector = Collector(bootstrap, out_topic, keep=cause_of if kind == "worker" else (lambda v: v))
    producer = new_producer(bootstrap, client_id="leadpulse-bench")
    await start_producer(producer, bootstrap)
    sent = 0
    pre = Phase("preload", None, preload)
    try:
        for phase in [pre] + phases:
            await send(producer, first.prefix, phase)
            sent += len(phase.msgs)
            t0 = time.perf_counter()
            phase.drained = await drain(kind, svcs, collector, phase, sent,
                                        args.drain_timeout if phase is not pre else args.drain_timeout * 2,
                                        args.settle)
            if kind == "worker" and phase.drained:  # all published: wait until the collector has read them
                # (decay-sweep scores may go on for a while: they are not caused by the phase)
                await asyncio.to_thread(_settle, collector, args.settle, args.drain_timeout)
            phase.drain_seconds = time.perf_counter() - t0
            print(f"  {kind} {phase.name}: {len(phase.msgs)} events sent in {phase.send_seconds:.1f} s, "
                  f"processed {'yes' if phase.drained else 'NO'} after {phase.drain_seconds:.1f} s", flush=True)
            if not phase.drained and phase is not phases[-1]:
                # the next phase starts on a clean slate, or its rate and latencies would be this one's backlog's
                t1 = time.perf_counter()
                phase.caught_up = await drain(kind, svcs, collector, Phase("catch-up", None, []), sent,
                                              args.catch_up_timeout, args.settle)
                phase.catch_up_seconds = time.perf_counter() - t1
                print(f"  {kind} {phase.name}: caught up {'yes' if phase.caught_up else 'NO'} after "
                      f"{phase.catch_up_seconds:.1f} s more (untimed)", flush=True)
            for svc in svcs:
                if not svc.alive():
                    raise RuntimeError(f"{kind} died:\n{svc.log()}")
    finally:
        await producer.stop()
        collector.stop()
        for svc in svcs:
            svc.kill()
    return {"preload": pre, "phases": phases, "records": collector.records}


def _settle(collector: Collector, quiet: float, timeout: float) -> None:
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = collector.kept
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)


def analyse(kind: str, raw: dict) -> dict:
    """Per phase: offered and achieved rate, latency percentiles and CDF (ms)."""
    phases: list[Phase] = [raw["preload"]] + raw["phases"]
    first_out: dict[tuple, int] = {}  # (phase index, message index) -> first output timestamp
    if kind == "passthrough":
        by_value: dict[bytes, list] = {}
        for pi, ph in enumerate(phases):
            for mi, m in enumerate(ph.msgs):
                by_value.setdefault(m.value, []).append((pi, mi))
        for ts, value in raw["records"]:
            queue = by_value.get(value)
            if queue:
                first_out.setdefault(queue.pop(0), ts)
    else:
        by_cause: dict[str, list] = {}
        for pi, ph in enumerate(phases):
            for mi, m in enumerate(ph.msgs):
                by_cause.setdefault(m.cause, []).append((ph.sent_ms[mi], pi, mi))
        for ts, cause in raw["records"]:
            sends = by_cause.get(cause) if cause else None
            if not sends:
                continue
            k = bisect.bisect_right(sends, (ts, 1 << 30, 1 << 30)) - 1
            if k >= 0:
                _, pi, mi = sends[k]
                first_out[(pi, mi)] = min(first_out.get((pi, mi), ts), ts)
    out = []
    for pi, ph in enumerate(phases):
        lat = [first_out[(pi, mi)] - ph.sent_ms[mi] for mi in range(len(ph.msgs)) if (pi, mi) in first_out]
        ends = [first_out[(pi, mi)] for mi in range(len(ph.msgs)) if (pi, mi) in first_out]
        # An activity that arrived before its contact is held by the router and scored when the
        # contact comes, maybe phases later: its latency counts, but not in the phase's span.
        late = sum(1 for t in ends if ph.settled_ms is not None and t > ph.settled_ms)
        ends = [t for t in ends if ph.settled_ms is None or t <= ph.settled_ms]
        span = (max(ends) - ph.sent_ms[0]) / 1000 if ends else None
        lat.sort()
        cdf = [lat[min(len(lat) - 1, int(q * len(lat) / CDF_POINTS))] for q in range(CDF_POINTS + 1)] if lat else []
        (t0, n0), (t1, n1) = (ph.polls[0], ph.polls[-1]) if len(ph.polls) > 1 else ((0, 0), (0, 0))
        out.append({"name": ph.name, "rate": ph.rate, "events": len(ph.msgs),
                    "send_seconds": round(ph.send_seconds, 3),
                    "offered_rate": round(len(ph.msgs) / ph.send_seconds, 1) if ph.send_seconds > 0 else None,
                    # end to end, only when the phase was processed: otherwise its last outputs are missing
                    "achieved_rate": round(len(ph.msgs) / span, 1) if span and ph.drained else None,
                    # events through the last stage per second while draining (saturated: the capacity)
                    "drain_rate": round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else None,
                    "seconds_to_process": round(span, 3) if span else None,
                    "latency_samples": len(lat), "latency_ms": percentiles(lat),
                    "outputs_after_settled": late,
                    "cdf_ms": cdf, "drained": ph.drained, "drain_seconds": round(ph.drain_seconds, 2),
                    "caught_up": ph.caught_up,
                    "catch_up_seconds": round(ph.catch_up_seconds, 2) if ph.catch_up_seconds is not None else None,
                    "metrics_read_ms": {**percentiles(ph.poll_ms), "max": max(ph.poll_ms, default=None),
                                        "reads": len(ph.poll_ms)}})
    return {"preload": out[0], "phases": out[1:]}


def headline(apps: dict) -> dict:
    """The figures the report and README quote (None when not measured)."""
    def phase(app: str, name: str) -> dict:
        return next((p for p in apps.get(app, {}).get("phases", []) if p["name"] == name), {})
    def best(app: str) -> Optional[float]:  # end to end when drained, else the rate while behind
        ph = phase(app, "max")
        return ph.get("achieved_rate") or ph.get("drain_rate")
    w, p = best("worker"), best("passthrough")
    h = {"worker_max_events_per_s": w, "passthrough_max_events_per_s": p,
         "max_phase_processed": {a: phase(a, "max").get("drained") for a in ("worker", "passthrough")},
         "worker_over_passthrough": round(w / p, 4) if w and p else None}
    for rate in ("250", "1000", "2000"):
        for app in ("worker", "passthrough"):
            lat = phase(app, rate).get("latency_ms", {})
            h[f"{app}_p50_ms_at_{rate}"] = lat.get("p50")
            h[f"{app}_p99_ms_at_{rate}"] = lat.get("p99")
    return h


async def run(args: argparse.Namespace) -> dict:
    tables = ensure_world(args.world, args.seed, args.cache)
    preload, pool = load_stream(tables)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    print(f"stream bench: world {args.world}: {len(preload)} preload events, {len(pool)} to stream", flush=True)
    apps = {}
    with contextlib.ExitStack() as stack:
        bootstrap = start_broker(stack)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lp-bench-stream-")))
        for kind in [a for a in args.apps.split(",") if a]:
            phases = plan_phases(pool, rates, args.duration, args.max_events)
            try:
                apps[kind] = analyse(kind, await run_app(kind, bootstrap, work, preload, phases, args))
            except Exception as exc:  # the other app is still worth measuring; the JSON says why
                print(f"  {kind} failed: {exc}", file=sys.stderr, flush=True)
                apps[kind] = {"error": str(exc)[-2000:], "phases": []}
    return {"world": args.world, "seed": args.seed, "tables": str(tables),
            "settings": {"rates": rates, "duration_s": args.duration, "max_events": args.max_events,
                         "partitions": args.partitions, "processes": args.processes,
                         "drain_timeout_s": args.drain_timeout, "catch_up_timeout_s": args.catch_up_timeout,
                         "latency": "output record timestamp - input send timestamp (wall clock, ms)",
                         "worker": _worker_settings()},
            "events": {"preload": len(preload), "pool": len(pool)}, "apps": apps, "headline": headline(apps)}


def _worker_settings() -> dict:
    """The worker's batching settings in this run (from the environment it inherits)."""
    from leadpulse.stream.config import Settings
    w = Settings.from_env()
    return {"batch_size": w.batch_size, "batch_ms": w.batch_ms, "coalesce_ms": w.coalesce_ms,
            "coalesce_max_ms": w.coalesce_max_ms}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world, ~1 s phases (checks the harness)")
    ap.add_argument("--world", default=None, help="tiny, small, 10k or large (default 10k; quick: tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rates", default="250,1000,2000", help="fixed rates, events/s")
    ap.add_argument("--duration", type=float, default=None, help="seconds per fixed rate (default 60; quick 1)")
    ap.add_argument("--max-events", type=int, default=None, help="events of the max phase (default 60000)")
    ap.add_argument("--drain-timeout", type=float, default=None, help="longest wait per phase (default 300 s)")
    ap.add_argument("--catch-up-timeout", type=float, default=None,
                    help="after a phase not processed within the drain timeout, the longest untimed wait for "
                         "the worker to catch up before the next phase (default 3 x the drain timeout)")
    ap.add_argument("--settle", type=float, default=None, help="quiet seconds that end a worker phase")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--apps", default="worker,passthrough")
    ap.add_argument("--name", default="stream",
                    help="result file stem under --out (default stream; the report also reads stream-large)")
    ap.add_argument("--processes", type=int, default=1,
                    help="processes per app on this machine, in one consumer group (default 1)")
    add_model_args(ap)
    args = ap.parse_args(argv)
    q = args.quick
    defaults = {"world": "tiny" if q else "10k", "duration": 1.0 if q else 60.0,
                "max_events": 500 if q else 60_000, "drain_timeout": 60.0 if q else 300.0,
                "settle": 1.5 if q else 3.0, **model_defaults(q)}
    args = fill_defaults(args, defaults)
    if args.catch_up_timeout is None:
        args.catch_up_timeout = 3 * args.drain_timeout
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    benchmark_model(args)
    t0 = time.perf_counter()
    result = asyncio.run(run(args))
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    h = result["headline"]
    print("headline:", json.dumps(h), flush=True)
    write_json(args.out / f"{args.name}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
