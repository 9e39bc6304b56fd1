"""``leadpulse demo``: everything on one machine, in one command.

The demo is a list of steps (:data:`STEPS`) run in order over one :class:`DemoContext`. A step
is an ``async`` function of the context; it may push cleanups onto ``ctx.stack`` (an
``AsyncExitStack``), which unwinds on success, error and Ctrl-C alike, so everything the demo
started is stopped. The steps:

1. ``broker``   attach to ``KAFKA_BOOTSTRAP``, or start the embedded broker;
2. ``topics``   create the leadpulse topics (as ``leadpulse topics create`` does);
3. ``simulate`` write a small simulated CRM world as CSV tables (or use ``--tables DIR``);
4. ``split``    cut the events in event time: history (training) and the rest (live);
5. ``train``    ``leadpulse train`` on the history, in its own process;
6. ``worker``   ``leadpulse worker`` in its own process, until it answers /healthz;
7. ``replay``   publish the history at full speed and wait until the worker has caught up
                with it (every history event applied, deduplicated, dead-lettered or held,
                nothing unpublished; the live view says so, ``--timeout`` bounds it); then
                publish the rest at ``--rate`` (default 300 events/s), ``--speedup`` or
                ``--fast`` while the live view shows top leads, jumps with reasons, events/s and
                event→publish latency counted from the start of the live part, so it is the
                live latency, not the backlog's.

``--events-only`` runs the first three and ``stream`` (publish and count events per topic).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Optional, Sequence, TextIO

from leadpulse.stream.config import Settings
from leadpulse.stream.connection import KafkaConnection, check_reachable

if TYPE_CHECKING:
    from leadpulse.stream.liveview import LiveView, MetricsSample

logger = logging.getLogger(__name__)

#: default pace of the demo's publisher, so the live counts have something to show
DEFAULT_RATE = 10_000.0  # --events-only
LIVE_RATE = 300.0  # the live replay after the history
LATENCY_WINDOW = 10.0  # seconds of the live view's recent latency
REFRESH = 2.0  # seconds between two screens of the live view
QUIET = 6.0  # seconds without progress after which the worker's counts are taken as final


@dataclass
class DemoContext:
    """State shared by the demo's steps (each step fills in what the next ones need)."""
    settings: Settings
    args: argparse.Namespace
    stack: contextlib.AsyncExitStack
    out: TextIO = sys.stdout
    bootstrap: Optional[str] = None
    embedded: bool = False
    tables_dir: Optional[Path] = None
    published: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    split: dict[str, tuple[Path, int]] = field(default_factory=dict)
    web: Optional[str] = None
    worker: Optional[asyncio.subprocess.Process] = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @property
    def connection(self) -> KafkaConnection:
        """The broker with the configured TLS and SASL settings (``Settings.kafka_connection``)."""
        return self.settings.kafka_connection(self.bootstrap)


Step = Callable[[DemoContext], Awaitable[None]]


# --------------------------------------------------------------------------- steps
async def step_broker(ctx: DemoContext) -> None:
    if ctx.settings.kafka_bootstrap:
        ctx.bootstrap = ctx.settings.kafka_bootstrap
        await asyncio.to_thread(check_reachable, ctx.connection)
        ctx.say(f"[broker] attached to {ctx.bootstrap} (KAFKA_BOOTSTRAP)")
        return
    from leadpulse.stream.broker import EmbeddedBroker

    # started in the loop's own thread on purpose: its death signal is tied to that thread
    broker = ctx.stack.enter_context(EmbeddedBroker(bin=ctx.settings.broker_bin))
    ctx.bootstrap, ctx.embedded = broker.bootstrap, True
    ctx.say(f"[broker] embedded broker pid {broker.pid} on {ctx.bootstrap} (stopped when the demo ends)")


async def step_topics(ctx: DemoContext) -> None:
    from leadpulse.stream.topics_admin import TopicLayout, create_topics

    s = ctx.settings
    layout = TopicLayout.from_settings(s)
    created = await asyncio.to_thread(create_topics, s.kafka_connection(ctx.bootstrap), layout)
    ctx.say(f"[topics] {len(layout.names)} topics ready ({len(created)} created, {s.partitions} partitions "
            f"for new ones)")


async def step_simulate(ctx: DemoContext) -> None:
    if ctx.args.tables:
        ctx.tables_dir = Path(ctx.args.tables)
        ctx.say(f"[simulate] using existing tables in {ctx.tables_dir}")
        return
    try:
        from leadpulse import simulator
    except ImportError as exc:
        raise DemoError(f"the simulator package is not available ({exc}); pass --tables DIR") from exc
    out = ctx.settings.data_dir / "demo" / f"tables-{ctx.args.size}-{ctx.args.seed}"
    ctx.say(f"[simulate] simulating a {ctx.args.size} world (seed {ctx.args.seed}) into {out} ...")
    t = time.perf_counter()
    await asyncio.to_thread(simulator.simulate, size=ctx.args.size, seed=ctx.args.seed, out_dir=out)
    ctx.tables_dir = out
    ctx.say(f"[simulate] done in {time.perf_counter() - t:.1f} s")


async def step_stream(ctx: DemoContext) -> None:
    """Publish the tables and count what arrives on every topic, printing live."""
    from leadpulse.stream.consume import tail
    from leadpulse.stream.publish import publish_async

    s = ctx.settings
    watched = s.all_topics
    ctx.seen = {t: 0 for t in watched}
    published = asyncio.Event()

    async def watch() -> None:
        gen = tail(ctx.connection, watched)
        last_print = 0.0
        try:
            async for batch in gen:
                for record in batch:
                    ctx.seen[record.topic] += 1
                now = time.monotonic()
                done = published.is_set() and all(ctx.seen[t] >= n for t, n in ctx.published.items())
                if done or now - last_print >= 0.5:
                    last_print = now
                    _print_counts(ctx, final=done)
                if done:
                    return
        finally:
            await gen.aclose()

    watcher = asyncio.create_task(watch())
    ctx.stack.push_async_callback(_cancel, watcher)
    rate, speedup, pace = _pace(ctx.args, DEFAULT_RATE)
    ctx.say(f"[stream] publishing {ctx.tables_dir} -> input topics at {pace}; messages seen per topic:")
    report = await publish_async(ctx.tables_dir, ctx.connection, rate=rate,  # type: ignore[arg-type]
                                 speedup=speedup, progress=False, topics=s.topic_map(),
                                 partitions=s.partitions)
    ctx.published = {t: n for t, n in report.counts.items() if n}
    published.set()
    for err in report.errors[:10]:
        ctx.say(f"[stream] bad row skipped: {err}")
    try:
        await asyncio.wait_for(asyncio.shield(watcher), timeout=ctx.args.timeout)
    except asyncio.TimeoutError:
        _print_counts(ctx, final=True)
        raise DemoError(f"not every published event was seen within {ctx.args.timeout:.0f} s") from None
    ctx.say(f"[stream] {report.summary()}")


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _print_counts(ctx: DemoContext, final: bool) -> None:
    parts = [f"{t}={n}" for t, n in ctx.seen.items() if n or t in ctx.published]
    line = "  seen: " + ("  ".join(parts) or "(nothing yet)")
    if ctx.out.isatty():
        print("\r\x1b[K" + line, end="\n" if final else "", file=ctx.out, flush=True)
    else:
        print(line, file=ctx.out, flush=True)


# --------------------------------------------------------------------------- live scoring
def _state_dir(ctx: DemoContext) -> Path:
    return ctx.settings.data_dir / "demo" / "state"


async def step_split(ctx: DemoContext) -> None:
    """History (the model trains on it) and the rest (replayed live), split in event time."""
    import shutil

    from leadpulse.schemas.tables import read_tables, write_table
    from leadpulse.schemas.topics import INPUT_TOPICS

    events, _ = await asyncio.to_thread(read_tables, ctx.tables_dir)
    behaviour = [e.event_time for e in events if e.kind in ("activity", "order", "opportunity")]
    start, end = min(behaviour), max(behaviour)
    cut = start + (end - start) * ctx.args.history
    state = _state_dir(ctx)
    shutil.rmtree(state, ignore_errors=True)  # the embedded broker starts empty: so does the demo
    for name, part in (("history", [e for e in events if e.event_time <= cut]),
                       ("live", [e for e in events if e.event_time > cut])):
        for spec in INPUT_TOPICS:
            write_table(state / name, spec, [e for e in part if e.kind == spec.model.kind])
        ctx.split[name] = (state / name, len(part))
    ctx.say(f"[split] history until {cut:%Y-%m-%d} ({ctx.split['history'][1]:,} events) for training; "
            f"{ctx.split['live'][1]:,} later events replayed live")


def _env(ctx: DemoContext, **extra: str) -> dict:
    import os
    env = dict(os.environ, KAFKA_BOOTSTRAP=ctx.bootstrap or "", LEADPULSE_DATA_DIR=str(_state_dir(ctx)),
               LEADPULSE_PARTITIONS=str(ctx.settings.partitions), PYTHONUNBUFFERED="1",
               # the embedded broker's end offsets are wrong when producers batch (docs/kafka-notes.md#trap-1)
               **({"LEADPULSE_LAG_SECONDS": "0"} if ctx.embedded else {}))
    env.update(extra)
    return env


async def step_train(ctx: DemoContext) -> None:
    """Train the first model on the history in a separate process (as a retrain job would)."""
    ctx.say(f"[train] training the first model on the history: {ctx.settings.candidates.replace(',', ', ')} "
            f"(the GNN for at most {ctx.args.epochs} epochs); the best on validation serves ...")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "leadpulse.stream.cli", "train", "--tables", str(ctx.split["history"][0]),
        "--epochs", str(ctx.args.epochs), env=_env(ctx, LEADPULSE_LOG_LEVEL="WARNING"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    ctx.stack.push_async_callback(_stop_process, proc)
    assert proc.stdout is not None
    async for line in proc.stdout:
        ctx.say("[train] " + line.decode(errors="replace").rstrip())
    if await proc.wait() != 0:
        raise DemoError("training failed (see the lines above)")


async def step_worker(ctx: DemoContext) -> None:
    """Start ``leadpulse worker`` and wait until it answers on /healthz."""
    from leadpulse.stream.broker import free_port

    port = free_port()
    log = _state_dir(ctx) / "worker.log"
    fh = open(log, "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "leadpulse.stream.cli", "worker", env=_env(ctx, LEADPULSE_WEB_PORT=str(port)),
        stdout=fh, stderr=asyncio.subprocess.STDOUT)
    ctx.stack.push_async_callback(_stop_process, proc)
    ctx.stack.callback(fh.close)
    ctx.web, ctx.worker = f"http://127.0.0.1:{port}", proc
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise DemoError(f"the worker exited (log: {log})")
        if await _get(ctx.web + "/healthz") is not None:
            break
        await asyncio.sleep(0.5)
    else:
        raise DemoError(f"the worker did not answer within 60 s (log: {log})")
    ctx.say(f"[worker] pid {proc.pid}: {ctx.web}/metrics  {ctx.web}/leads/<contact_id>  (log {log})")


def _pace(args: argparse.Namespace, default_rate: float) -> tuple[Optional[float], Optional[float], str]:
    """(rate, speedup, how it reads) from ``--rate`` / ``--speedup`` / ``--fast``."""
    rate, speedup = args.rate, args.speedup
    if rate is None and speedup is None and not args.fast:
        rate = default_rate
    return rate, speedup, (f"{rate:,.0f} events/s" if rate else f"{speedup:g} x event time" if speedup
                           else "full speed")


async def step_replay(ctx: DemoContext) -> None:
    """Publish the history at full speed, wait until the worker has caught up with it, then
    replay the rest at ``--rate`` with the live view (its latency is the live part's)."""
    from leadpulse.stream.consume import tail
    from leadpulse.stream.liveview import LiveView
    from leadpulse.stream.publish import publish_async

    s = ctx.settings
    view = LiveView()
    scores_topic, alerts_topic = s.topic("leads.scores"), s.topic("leads.alerts")

    async def watch() -> None:
        gen = tail(ctx.connection, [scores_topic, alerts_topic])
        try:
            async for batch in gen:
                for record in batch:
                    (view.add_score if record.topic == scores_topic else view.add_alert)(record.value)
        finally:
            await gen.aclose()

    watcher = asyncio.create_task(watch())
    ctx.stack.push_async_callback(_cancel, watcher)
    began = time.monotonic()
    ctx.say("[replay] publishing the history at full speed (the worker builds its graph) ...")
    history = (await publish_async(ctx.split["history"][0], ctx.connection, progress=False,
                                   topics=s.topic_map(), partitions=s.partitions)).sent
    # Live events only once the worker has caught up with the history, as a deployment backfills
    # before it goes live: otherwise they queue behind the backlog and the view shows its latency.
    caught = await _catch_up(ctx, view, history, began)
    rate, speedup, pace = _pace(ctx.args, LIVE_RATE)
    n_live = ctx.split["live"][1]
    ctx.say(f"[replay] replaying {n_live:,} later events live at {pace} (event→publish latency "
            f"from here on is the live part's)")
    baseline = await _metrics(ctx) or caught  # the latency buckets before the first live event
    sent = [0]
    live = asyncio.create_task(publish_async(ctx.split["live"][0], ctx.connection, rate=rate,  # type: ignore[arg-type]
                                             speedup=speedup, progress=False, topics=s.topic_map(),
                                             partitions=s.partitions,
                                             on_progress=lambda n: sent.__setitem__(0, n)))
    ctx.stack.push_async_callback(_cancel, live)

    def note(metrics, applied_per_s) -> str:
        return f"live part: {sent[0]:,} of {n_live:,} events published at {pace}"

    done, last = await _follow(ctx, view, lambda: history + live.result().sent if live.done() else None,
                               began, note, baseline)
    if not done:
        ctx.say(f"[replay] timeout reached: the live part ran {ctx.args.timeout:.0f} s (--timeout)")
    live_latency = last.since(baseline) if last is not None else None
    if live_latency is not None and live_latency.quantile(0.5) is not None:
        ctx.say(f"[replay] live part: event→publish p50 {live_latency.quantile(0.5) * 1000:,.0f} ms  "
                f"p99 {live_latency.quantile(0.99) * 1000:,.0f} ms ("
                f"{live_latency.latency_buckets[-1][1]:,.0f} observations) at {pace}")
    ctx.say(f"[demo] {view.n_scores:,} score changes and {view.n_alerts:,} alerts published")
    keep = ctx.args.keep_running if ctx.args.keep_running is not None else ctx.out.isatty()
    if keep:
        ctx.say(f"[demo] the worker keeps serving until Ctrl-C: curl {ctx.web}/leads/<contact_id>  "
                f"(e.g. {view.top_contact() or 'ct_000001'}), {ctx.web}/metrics")
        while True:  # Ctrl-C cancels this; the exit stack then stops the worker and the broker
            await asyncio.sleep(3600)


async def _catch_up(ctx: DemoContext, view: LiveView, history: int, began: float) -> MetricsSample:
    """Wait, with the live view saying so, until the worker has caught up with the ``history``
    events just published; the sample that says so. A worker that has not within ``--timeout``
    seconds is stuck, or far too slow for the live part to mean anything: a DemoError says
    where it stands rather than a live view showing the backlog's latency as the live one."""
    t = time.monotonic()

    def note(metrics, applied_per_s) -> str:
        if metrics is None:
            return f"catching up with the history ({history:,} events): waiting for the worker's /metrics"
        rate = f"{applied_per_s:,.0f} events/s" if applied_per_s is not None else "- events/s"
        return (f"catching up with the history: applied {metrics.applied:,.0f} of {history:,} events "
                f"({rate}); the live replay starts when the worker has caught up")

    done, last = await _follow(ctx, view, lambda: history, began, note)
    if not done:
        where = (f"consumed {last.consumed:,.0f}, applied {last.applied:,.0f}, dead letters "
                 f"{last.rejected:,.0f}, held {last.held:,.0f}, unpublished {last.unpublished:,.0f}"
                 if last is not None else "its /metrics never answered")
        raise DemoError(f"the worker did not catch up with the {history:,} history events within "
                        f"{ctx.args.timeout:.0f} s ({where}; log {_state_dir(ctx) / 'worker.log'}); "
                        f"a slower machine needs a longer --timeout, or try --size tiny")
    gap = history - (last.applied + last.rejected + last.held)
    ctx.say(f"[replay] caught up with the history in {time.monotonic() - t:.0f} s: {last.applied:,.0f} of "
            f"{history:,} events applied, {last.rejected:,.0f} dead letters, {last.held:,.0f} held for a "
            f"contact not seen yet, nothing unpublished"
            + (f" ({gap:,.0f} not accounted for; nothing moved for {QUIET:.0f} s)" if gap > 0 else ""))
    return last


def _caught_up(metrics: MetricsSample, expected: int, quiet_for: float) -> bool:
    """The worker is done with ``expected`` input events: it consumed them all, applied (or
    deduplicated), dead-lettered or holds every one, and has no score change left unpublished.
    Should those counts never add up, nothing having moved for QUIET s ends the wait too."""
    if metrics.consumed < expected or metrics.unpublished > 0:
        return False
    return metrics.applied + metrics.rejected + metrics.held >= expected or quiet_for >= QUIET


async def _follow(ctx: DemoContext, view: LiveView, expected: Callable[[], Optional[int]], began: float,
                  note: Callable[[Optional[MetricsSample], Optional[float]], str],
                  baseline: Optional[MetricsSample] = None) -> tuple[bool, Optional[MetricsSample]]:
    """Refresh the live view every REFRESH s until the worker has caught up with ``expected()``
    input events (None while they are still being published). (True, the last /metrics sample)
    then, (False, the last sample) after ``--timeout`` s. ``baseline``: the sample the view's
    cumulative latency counts from. A worker that exits ends the demo with a DemoError."""
    start = last_moved = time.monotonic()
    last, progress = None, None  # (time, sample) of the previous answer; the counts that move
    window: deque = deque()  # (time, metrics) of the last LATENCY_WINDOW seconds
    while True:
        await asyncio.sleep(REFRESH)
        if ctx.worker is not None and ctx.worker.returncode is not None:
            raise DemoError(f"the worker exited with code {ctx.worker.returncode} "
                            f"(log {_state_dir(ctx) / 'worker.log'})")
        metrics = await _metrics(ctx)
        now = time.monotonic()
        consumed_per_s, applied_per_s, recent = None, None, None
        if metrics is None:  # a busy worker may not answer /metrics in time: that is not quiet
            last_moved = now
        else:
            if last:
                consumed_per_s = (metrics.consumed - last[1].consumed) / (now - last[0])
                applied_per_s = (metrics.applied - last[1].applied) / (now - last[0])
            while window and now - window[0][0] > LATENCY_WINDOW:
                window.popleft()
            if window:
                recent = (now - window[0][0], metrics.since(window[0][1]))
            window.append((now, metrics))
            moving = (metrics.consumed, metrics.applied, metrics.rejected, metrics.held,
                      metrics.unpublished, metrics.published)
            if moving != progress:
                progress, last_moved = moving, now
        screen = view.render(metrics, consumed_per_s, now - began, recent,
                             note=note(metrics, applied_per_s), baseline=baseline)
        if ctx.out.isatty():
            ctx.out.write("\x1b[2J\x1b[H")
        ctx.say(screen + "\n")
        last = (now, metrics) if metrics is not None else last
        n = expected()
        if metrics is not None and n is not None and _caught_up(metrics, n, now - last_moved):
            return True, metrics
        if now - start > ctx.args.timeout:
            return False, last[1] if last else None


async def _metrics(ctx: DemoContext) -> Optional[MetricsSample]:
    """The worker's /metrics, parsed (None when it does not answer in time)."""
    from leadpulse.stream.liveview import parse_metrics

    text = await _get(ctx.web + "/metrics")
    return parse_metrics(text) if text else None


async def _get(url: str) -> Optional[str]:
    import urllib.request

    def fetch() -> Optional[str]:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None
    return await asyncio.to_thread(fetch)


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=15)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


#: the demo, in order; insert new steps here (name, coroutine function)
STEPS: list[tuple[str, Step]] = [
    ("broker", step_broker),
    ("topics", step_topics),
    ("simulate", step_simulate),
    ("split", step_split),
    ("train", step_train),
    ("worker", step_worker),
    ("replay", step_replay),
]

#: the first demo: events flowing, no scoring (``leadpulse demo --events-only``)
EVENT_STEPS: list[tuple[str, Step]] = STEPS[:3] + [("stream", step_stream)]


class DemoError(RuntimeError):
    """A demo step could not proceed (the message says what to do)."""


async def run_demo(settings: Settings, args: argparse.Namespace,
                   steps: Optional[Sequence[tuple[str, Step]]] = None, out: TextIO = sys.stdout) -> DemoContext:
    """Run ``steps`` (default :data:`STEPS`) in order; everything started is stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(settings=settings, args=args, stack=stack, out=out)
        for name, step in steps or STEPS:
            logger.debug("demo step %s", name)
            await step(ctx)
        ctx.say("[demo] done; stopping what the demo started")
        return ctx


# --------------------------------------------------------------------------- CLI
def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        asyncio.run(run_demo(settings, args, EVENT_STEPS if args.events_only else STEPS))
    except DemoError as exc:
        print(f"leadpulse demo: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from leadpulse.stream.cli import add_pacing_arguments

    p = subparsers.add_parser("demo", help="the whole story on the embedded broker, in one command",
                              description="Attach to KAFKA_BOOTSTRAP or start the embedded broker, "
                                          "simulate a small CRM world, train the first model on its "
                                          "history, start a worker, publish the history and wait "
                                          "until the worker has caught up with it, then replay the "
                                          "rest as a live stream and show top leads, jumps with "
                                          "reasons, events/s and the live part's event->publish "
                                          "latency. Ctrl-C stops everything the demo started.")
    p.add_argument("--size", choices=("tiny", "small", "large"), default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", default=None, help="publish this table directory instead of simulating")
    add_pacing_arguments(p, default=f"{LIVE_RATE:,.0f} for the live replay, {DEFAULT_RATE:,.0f} with --events-only")
    p.add_argument("--fast", action="store_true",
                   help="publish the live part (with --events-only, the tables) as fast as possible; "
                        "the history always is")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="longest wait in seconds of each replay phase: for the worker to catch up with "
                        "the history (past it the demo fails, saying where the worker stands), then "
                        "for the live part (past it the demo ends); with --events-only, of the event "
                        "count (default 600)")
    p.add_argument("--history", type=float, default=0.6,
                   help="share of the event-time span used as training history (default 0.6)")
    p.add_argument("--epochs", type=int, default=40, help="max training epochs of the first model (default 40)")
    p.add_argument("--keep-running", action=argparse.BooleanOptionalAction, default=None,
                   help="after the replay, keep the worker serving /leads and /metrics until Ctrl-C "
                        "(default: yes on a terminal, no otherwise)")
    p.add_argument("--events-only", action="store_true",
                   help="only publish and count events (no training, no worker)")
    p.set_defaults(func=_run)
