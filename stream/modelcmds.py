"""``leadpulse evaluate | train | retrain``: the model commands of the CLI.

``train`` fits the candidate families (``LEADPULSE_CANDIDATES``: the GNN, LightGBM with account
aggregates, their hybrid) on a CSV export; ``retrain`` fits them on a worker's graph store as it
stands (opened read-only beside the running worker, so ingestion never stops). Each candidate is
registered; the one with the best validation AUROC is the challenger, promoted only when it
beats the champion on the newest held-out window and announce the
decision on ``models.updates`` when a broker is configured; workers hot-swap the new champion.
Below ``LEADPULSE_MIN_TRAIN_POSITIVES`` / ``LEADPULSE_MIN_TRAIN_EXAMPLES`` the GNN is refused and
the rules model is decided on instead; both decisions are printed and announced (with the
family, ``ModelUpdate.family``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from leadpulse.stream.config import Settings

logger = logging.getLogger(__name__)


def _run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.model.evaluate import main as evaluate_main
    argv = ["--tables", args.tables, "--task", args.task, "--seed", str(args.seed)]
    if args.json:
        argv += ["--json", args.json]
    if args.models:
        argv += ["--models", args.models]
    return evaluate_main(argv)


def _train_options(args: argparse.Namespace):
    from leadpulse.model.train import TrainOptions
    kw = {"seed": args.seed}
    if args.epochs:
        kw["epochs"] = args.epochs
    return TrainOptions.of(**kw)


def _report(result, settings: Settings) -> int:
    """Print each decision (the learned challenger's, then the rules fallback's when it was short
    of data) and announce each on ``models.updates``."""
    results = [result] + ([result.fallback] if result.fallback is not None else [])
    for c in result.candidates[1:]:
        shown = f"{c['valid_auroc']:.4f}" if c["valid_auroc"] is not None else "unmeasured"
        print(f"candidate {c['version']}: validation AUROC {shown}, held-out window "
              + ", ".join(f"{k}={v:.4f}" for k, v in c["metrics"].items() if isinstance(v, float)))
    for r in results:
        d = r.decision
        print(f"trained {r.version} in {r.seconds:.1f} s; held-out window metrics: "
              + ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items() if isinstance(v, float)))
        print(("PROMOTED: " if d.promoted else "not promoted: ") + d.reason)
    if settings.kafka_bootstrap:
        return max(announce_or_explain(settings, lambda r=r: announce(settings, r)) for r in results)
    return 0


def announce_or_explain(settings: Settings, send: Callable[[], None]) -> int:
    """Run ``send`` (an announcement on ``models.updates``); 0, or 1 after saying on stderr that
    the change is in the registry but was not announced."""
    from kafka.errors import KafkaError

    from leadpulse.stream.connection import BrokerUnavailable
    try:
        send()
    except (BrokerUnavailable, KafkaError) as exc:
        print(f"the decision is in the registry ({settings.models_path}) but was not announced on "
              f"{settings.topic('models.updates')}: {exc}", file=sys.stderr)
        return 1
    return 0


def announce(settings: Settings, result) -> None:
    """Publish a training decision (``result``: ``version``, ``metrics``, ``decision``) on
    ``models.updates``; see :func:`announce_update`."""
    announce_update(settings, result.version, result.decision.promoted, result.decision.reason, result.metrics,
                    family=result.family)


def announce_update(settings: Settings, version: str, promoted: bool, reason: str, metrics: dict,
                    trained_at: Optional[datetime] = None, family: Optional[str] = None) -> None:
    """Publish a ``ModelUpdate`` on ``models.updates`` (key = model version) over the configured
    connection (``Settings.kafka_connection``: TLS, SASL, timeout).

    Args:
        version: the model the update is about.
        promoted: whether it is now the champion.
        reason: why (the decision's reason).
        metrics: its held-out figures; values that are not numbers are left out.
        trained_at: when the model was trained. Default: now (a model just trained).
        family: its family ("gnn", "lgbm_agg", "hybrid", "rules"). Default: the version's prefix.

    Raises:
        BrokerUnavailable: no broker answered with the connection's settings (the message says why).
        kafka.errors.KafkaError: the record was not acknowledged within the connection's timeout.
    """
    from kafka import KafkaProducer

    from leadpulse.schemas.events import ModelUpdate
    from leadpulse.stream.connection import check_reachable, kafka_python_kwargs
    update = ModelUpdate(model_version=version, family=family or version.rsplit("-v", 1)[0],
                         trained_at=trained_at or datetime.now(timezone.utc),
                         metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
                         promoted=promoted, reason=reason)
    conn = settings.kafka_connection()
    check_reachable(conn)
    timeout_ms = int(conn.request_timeout_s * 1000)
    producer = KafkaProducer(**kafka_python_kwargs(conn), client_id="leadpulse-models", request_timeout_ms=timeout_ms,
                             bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    try:
        producer.send(settings.topic("models.updates"), key=version.encode(),
                      value=update.model_dump_json().encode()).get(timeout=conn.request_timeout_s)
    finally:
        producer.close()


def _parse_task(name: str, args: argparse.Namespace):
    """The ``--task`` query, or None after printing where it is wrong."""
    from leadpulse.model.task import TaskError, parse_task
    try:
        return parse_task(args.task)
    except TaskError as exc:
        print(f"leadpulse {name}: bad --task\n{exc.pointer()}", file=sys.stderr)
        return None


def _train_on(name: str, store, start: int, end: int, task, args: argparse.Namespace,
              settings: Settings) -> int:
    """Train, register and decide promotion on ``store``'s data in ``[start, end]``."""
    from leadpulse.model.examples import SplitError
    from leadpulse.model.pipeline import train_challenger
    from leadpulse.model.registry import ModelRegistry
    try:
        result = train_challenger(store, start, end, task, ModelRegistry(settings.models_path),
                                  _train_options(args), minimum=settings.minimum_data(),
                                  families=settings.families())
    except SplitError as exc:
        print(f"leadpulse {name}: {exc}", file=sys.stderr)
        return 2
    return _report(result, settings)


def _run_train(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import data_span
    from leadpulse.schemas.tables import read_tables

    task = _parse_task("train", args)
    if task is None:
        return 2
    events, errors = read_tables(args.tables)
    if errors:
        print(f"{len(errors)} bad rows skipped (first: {errors[0]})", file=sys.stderr)
    if not events:
        print(f"leadpulse train: no events in {args.tables}", file=sys.stderr)
        return 2
    store = MemoryGraphStore()
    store.apply(events)
    return _train_on("train", store, *data_span(events), task, args, settings)


def _run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.graph_store.rocks import RocksDBGraphStore

    task = _parse_task("retrain", args)
    if task is None:
        return 2
    path = Path(args.data_dir or settings.data_dir) / "worker" / "graph"
    if not path.exists():
        print(f"leadpulse retrain: no worker graph store at {path}", file=sys.stderr)
        return 2
    store = RocksDBGraphStore(path, read_only=True)
    try:
        span = store.time_span()
        if span is None:
            print("leadpulse retrain: the graph store is empty", file=sys.stderr)
            return 2
        return _train_on("retrain", store, span[0], span[1], task, args, settings)
    finally:
        store.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    from leadpulse.model.task import DEFAULT_TASK, TASK_HELP  # light: no torch at --help time

    p = subparsers.add_parser("evaluate", help="compare the GNN and every baseline on a CSV export",
                              description="Temporal split; prints AUROC, AP, precision and lift at "
                                          "the top decile and Brier score for every model.")
    p.add_argument("--tables", required=True, help="directory of companies.csv, contacts.csv, ...")
    p.add_argument("--task", default=DEFAULT_TASK, help=TASK_HELP)
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=None, help="comma-separated subset of rules,logreg,lgbm_flat,lgbm_agg,gnn,hybrid (default: all); "
                   "the report ends with the champion row, the servable family with the best validation AUROC")
    p.set_defaults(func=_run_evaluate)

    for name, func, help_text in (
            ("train", _run_train, "train every candidate family on a CSV export, register each, promote the "
                                   "one best on validation if it beats the champion"),
            ("retrain", _run_retrain, "train the candidates on a worker's graph store as it stands")):
        p = subparsers.add_parser(name, help=help_text,
                                  description=help_text + ". The families are $LEADPULSE_CANDIDATES "
                                  "(default gnn,lgbm_agg,hybrid); the model registry is "
                                  "$LEADPULSE_MODEL_DIR (default $LEADPULSE_DATA_DIR/models).")
        if name == "train":
            p.add_argument("--tables", required=True, help="directory of companies.csv, contacts.csv, ...")
        else:
            p.add_argument("--data-dir", default=None, help="the worker's data dir (default $LEADPULSE_DATA_DIR)")
        p.add_argument("--task", default=DEFAULT_TASK, help=TASK_HELP + " (the model carries it: workers "
                       "score only the leads of its population)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--epochs", type=int, default=None, help="max training epochs (default: the model's)")
        p.set_defaults(func=func)
