"""The ``leadpulse`` command: a thin dispatcher over subcommands.

Each subcommand lives in a module with a ``register(subparsers)`` function that adds its parser
and sets ``func=run`` where ``run(args, settings) -> int`` (the exit code). Add a subcommand by
appending its module to :data:`COMMAND_MODULES`; heavy imports belong inside ``run`` so that
``leadpulse --help`` stays fast.

    leadpulse broker                       # embedded broker in the foreground
    leadpulse topics create | check        # the topics on KAFKA_BOOTSTRAP, as they must be
    leadpulse simulate --size small --seed 7 --out var/tables
    leadpulse publish --tables var/tables [--rate 500 | --speedup 3600]
    leadpulse demo
    leadpulse erase --contact ID           # right to erasure, on every worker
    leadpulse models list | show | promote | rollback | pin | unpin   # the model registry by hand
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from leadpulse.stream.config import Settings, SettingsError
from leadpulse.stream.connection import BrokerUnavailable

logger = logging.getLogger(__name__)

#: modules whose ``register(subparsers)`` adds subcommands, in help order
COMMAND_MODULES: list[str] = ["leadpulse.stream.cli", "leadpulse.stream.topicscmd", "leadpulse.stream.demo", "leadpulse.stream.worker", "leadpulse.stream.modelcmds", "leadpulse.stream.modelsadmin", "leadpulse.stream.erasecmd", "leadpulse.stream.benchcmd"]


# --------------------------------------------------------------------------- broker
def _run_broker(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.broker import EmbeddedBroker
    from leadpulse.stream.topics_admin import TopicLayout, create_topics

    with EmbeddedBroker(bin=settings.broker_bin, port=args.port) as broker:
        if not args.no_topics:
            create_topics(broker.bootstrap, TopicLayout.from_settings(settings))
        print(f"embedded broker (pid {broker.pid}) listening; in another shell:", flush=True)
        print(f"  export KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        print("Ctrl-C stops it (it keeps everything in memory: topics die with it).", flush=True)
        stop = threading.Event()
        while not stop.wait(0.5):
            if not broker.is_running():
                print("embedded broker exited unexpectedly", file=sys.stderr)
                return 1
    return 0


# --------------------------------------------------------------------------- simulate
def _run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from leadpulse import simulator
    except ImportError as exc:
        print(f"leadpulse simulate: the simulator package is not available ({exc})", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else settings.data_dir / f"tables-{args.size}-{args.seed}"
    result = simulator.simulate(size=args.size, seed=args.seed, out_dir=out)
    counts = result.counts() if callable(getattr(result, "counts", None)) else None
    print(f"simulated a {args.size} world (seed {args.seed}) into {out}" + (f": {counts}" if counts else ""))
    return 0


# --------------------------------------------------------------------------- publish
def _run_publish(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.publish import PublishError, publish
    from leadpulse.stream.topics_admin import TopicsError

    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if not bootstrap:
        print("leadpulse publish: no broker; set KAFKA_BOOTSTRAP or pass --bootstrap "
              "(`leadpulse broker` starts one)", file=sys.stderr)
        return 2
    try:
        report = publish(args.tables, settings.kafka_connection(bootstrap), rate=args.rate, speedup=args.speedup,
                         progress=not args.no_progress, topics=settings.topic_map(),
                         partitions=settings.partitions, replication=settings.replication)
    except (TopicsError, PublishError, FileNotFoundError) as exc:
        print(f"leadpulse publish: {exc}", file=sys.stderr)
        return 2
    for err in report.errors[:50]:
        print(f"bad row: {err}", file=sys.stderr)
    if len(report.errors) > 50:
        print(f"... and {len(report.errors) - 50} more bad rows", file=sys.stderr)
    print(report.summary())
    return 1 if (args.strict and report.errors) else 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_pacing_arguments(parser: argparse.ArgumentParser, default: str = "as fast as possible") -> None:
    """``--rate`` / ``--speedup`` (mutually exclusive), shared by publish and demo; ``default``
    says what happens without either."""
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive_float, metavar="EV_PER_S",
                      help=f"publish at this many events per second (default: {default})")
    pace.add_argument("--speedup", type=_positive_float, metavar="X",
                      help="publish at X times event time (3600 = one hour of history per second)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground",
                              description="Start the embedded Tansu broker on a loopback port, create "
                                          "the leadpulse topics (as `leadpulse topics create` does) and "
                                          "print the bootstrap address. Development only: it keeps "
                                          "everything in memory.")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.add_argument("--no-topics", action="store_true", help="do not create the leadpulse topics")
    p.set_defaults(func=_run_broker)

    p = subparsers.add_parser("simulate", help="write a simulated CRM world as CSV tables",
                              description="Generate a synthetic CRM (docs/tables.md format).")
    p.add_argument("--size", choices=("tiny", "small", "medium", "large"), default="small",
                   help="tiny 25 accounts/90 days, small 500/181, medium 2,000/273, large 10,000/273 "
                        "(docs/simulator.md#sizes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default: $LEADPULSE_DATA_DIR/tables-SIZE-SEED)")
    p.set_defaults(func=_run_simulate)

    p = subparsers.add_parser("publish", help="send CSV tables to the input topics",
                              description="Send every valid row of a table directory (docs/tables.md) "
                                          "to its input topic, in event-time order. Bad rows are "
                                          "reported and skipped. Needs KAFKA_BOOTSTRAP (or "
                                          "--bootstrap); missing input topics are created as "
                                          "`leadpulse topics create` creates them.")
    p.add_argument("--tables", required=True, help="directory of companies.csv, contacts.csv, ...")
    add_pacing_arguments(p)
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: $KAFKA_BOOTSTRAP)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any row is bad")
    p.set_defaults(func=_run_publish)


# --------------------------------------------------------------------------- dispatch
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadpulse", description="Real-time B2B lead scoring.",
        epilog="Environment: KAFKA_BOOTSTRAP (required by worker, publish and topics; only demo, broker "
               "and worker --embedded start an embedded broker), LEADPULSE_PARTITIONS, "
               "LEADPULSE_DATA_DIR, LEADPULSE_TOPIC_* ... (see stream/config.py).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = sys.modules[__name__] if name == __name__ else importlib.import_module(name)
        module.register(subparsers)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # the Kafka clients log every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``leadpulse`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"leadpulse: {exc}", file=sys.stderr)
        return 2
    _configure_logging("DEBUG" if args.verbose else settings.log_level)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # clean up (kill brokers) on SIGTERM too
    try:
        return int(args.func(args, settings) or 0)
    except (BrokerUnavailable, SettingsError) as exc:  # a Kafka client's traceback would bury the cause
        print(f"leadpulse {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
