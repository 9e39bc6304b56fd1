"""``leadpulse demo``: everything on one machine, in one command.

The demo is a list of steps (:data:`STEPS`) run in order over one :class:`DemoContext`. A step
is an ``async`` function of the context; it may push cleanups onto ``ctx.stack`` (an
``AsyncExitStack``), which unwinds on success, error and Ctrl-C alike, so everything the demo
started is stopped. Today's steps:

1. ``broker``   attach to ``KAFKA_BOOTSTRAP``, or start the embedded broker;
2. ``topics``   create the leadpulse topics;
3. ``simulate`` write a small simulated CRM world as CSV tables (or use ``--tables DIR``);
4. ``stream``   publish the tables while a consumer prints live per-topic counts, until every
                published event has been seen.

Live scoring will add steps between ``topics`` and ``stream`` (start the worker) and after it
(watch ``leads.scores``): insert them into :data:`STEPS`, or pass ``steps=`` to :func:`run_demo`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Optional, Sequence, TextIO

from stream.config import Settings

logger = logging.getLogger(__name__)

#: default pace of the demo's publisher, so the live counts have something to show
DEFAULT_RATE = 10_000.0


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

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


Step = Callable[[DemoContext], Awaitable[None]]


# --------------------------------------------------------------------------- steps
async def step_broker(ctx: DemoContext) -> None:
    if ctx.settings.kafka_bootstrap:
        ctx.bootstrap = ctx.settings.kafka_bootstrap
        ctx.say(f"[broker] attached to {ctx.bootstrap} (KAFKA_BOOTSTRAP)")
        return
    from stream.broker import EmbeddedBroker

    # started in the loop's own thread on purpose: its death signal is tied to that thread
    broker = ctx.stack.enter_context(EmbeddedBroker(bin=ctx.settings.broker_bin))
    ctx.bootstrap, ctx.embedded = broker.bootstrap, True
    ctx.say(f"[broker] embedded broker pid {broker.pid} on {ctx.bootstrap} (stopped when the demo ends)")


async def step_topics(ctx: DemoContext) -> None:
    from stream.topics_admin import ensure_topics

    s = ctx.settings
    counts = await asyncio.to_thread(ensure_topics, ctx.bootstrap, s.all_topics, s.partitions, s.replication)
    ctx.say(f"[topics] {len(counts)} topics ready ({s.partitions} partitions for new ones)")


async def step_simulate(ctx: DemoContext) -> None:
    if ctx.args.tables:
        ctx.tables_dir = Path(ctx.args.tables)
        ctx.say(f"[simulate] using existing tables in {ctx.tables_dir}")
        return
    try:
        import simulator
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
    from stream.consume import tail
    from stream.publish import publish_async

    s = ctx.settings
    watched = s.all_topics
    ctx.seen = {t: 0 for t in watched}
    published = asyncio.Event()

    async def watch() -> None:
        gen = tail(ctx.bootstrap, watched)  # type: ignore[arg-type]
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
    rate, speedup = ctx.args.rate, ctx.args.speedup
    if rate is None and speedup is None and not ctx.args.fast:
        rate = DEFAULT_RATE
    pace = f"{rate:,.0f} events/s" if rate else f"{speedup:g} x event time" if speedup else "full speed"
    ctx.say(f"[stream] publishing {ctx.tables_dir} -> input topics at {pace}; messages seen per topic:")
    report = await publish_async(ctx.tables_dir, ctx.bootstrap, rate=rate,  # type: ignore[arg-type]
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


#: the demo, in order; insert new steps here (name, coroutine function)
STEPS: list[tuple[str, Step]] = [
    ("broker", step_broker),
    ("topics", step_topics),
    ("simulate", step_simulate),
    ("stream", step_stream),
]


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
        asyncio.run(run_demo(settings, args))
    except DemoError as exc:
        print(f"leadpulse demo: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from stream.cli import add_pacing_arguments

    p = subparsers.add_parser("demo", help="broker + simulated CRM + live event counts, in one command",
                              description="Attach to KAFKA_BOOTSTRAP or start the embedded broker, "
                                          "simulate a small CRM world, publish it and show the events "
                                          "flowing. Ctrl-C stops everything the demo started.")
    p.add_argument("--size", choices=("tiny", "small", "large"), default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", default=None, help="publish this table directory instead of simulating")
    add_pacing_arguments(p)
    p.add_argument("--fast", action="store_true",
                   help=f"publish as fast as possible (default: {DEFAULT_RATE:,.0f} events/s)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for every published event to be seen (default 120)")
    p.set_defaults(func=_run)
