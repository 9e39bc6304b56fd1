"""``leadpulse worker``: the scoring service (Faust app over the graph store and the model).

One worker per data directory: its graph store, router state and score book live under
``$LEADPULSE_DATA_DIR/worker`` (run a second worker with another data dir and web port).
"""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from leadpulse.stream.config import Settings

logger = logging.getLogger(__name__)


@dataclass
class WorkerParts:
    """Everything a worker holds open; ``close`` releases it."""
    app: object
    processor: object
    router: object
    metrics: object
    stack: ExitStack

    def close(self) -> None:
        self.stack.close()


def _champion(settings: Settings) -> Optional[str]:
    from leadpulse.model.registry import ModelRegistry
    if settings.model_version != "champion":
        return settings.model_version  # pinned: never swapped
    try:
        return ModelRegistry(settings.models_path).champion()
    except Exception:  # a registry being written by a retrain must not stop scoring
        logger.exception("cannot read the model registry")
        return None


def load_scorer(settings: Settings, version: Optional[str] = None):
    """The scorer of the configured model version, or None when the registry has none yet; its
    ``serving`` (``stream.serving.Serving``) holds the task, AUROC, family and reason of the version."""
    from leadpulse.model.registry import ModelRegistry, RegistryError
    from leadpulse.model.scorer import Scorer
    from leadpulse.stream.serving import Serving

    registry = ModelRegistry(settings.models_path)
    try:
        model = registry.load(version or settings.model_version)
    except (RegistryError, FileNotFoundError, KeyError) as exc:
        logger.warning("no model to score with (%s): ingesting only; run `leadpulse train`", exc)
        return None
    scorer = Scorer(model, num_threads=1)
    # the task the model was trained for travels with it: the worker scores only the leads of its
    # population (``AccountProcessor.rescore``; docs/stream.md#the-population) and judges its
    # outcomes by it (``stream.outcomes``)
    try:
        task = _task_of(registry, model.version)
    except RegistryError as exc:
        logger.error("not scoring with %s: %s", model.version, exc)
        return None
    # the newest held-out AUROC recorded in the registry: the figure dashboards show beside the version
    windows = sorted(registry.artifact(model.version)["metrics"], key=lambda m: tuple(m["window"])) \
        if model.version else []
    # what /healthz says about the model: its family and why it is the champion (a rules model
    # below the minimum data says so, docs/model.md#minimum-data)
    pointer = registry.champion_reason() if model.version == registry.champion() else None
    serving = Serving(task=task, auroc=windows[-1]["metrics"].get("auroc") if windows else None,
                      family=getattr(model, "name", None),
                      reason=pointer or (f"pinned by LEADPULSE_MODEL_VERSION={settings.model_version}"
                                         if settings.model_version != "champion" else None))
    scorer.serving = serving  # read through ``stream.serving.serving_of``
    if serving.family == "rules":
        logger.warning("scoring with the rules model %s: %s", model.version, serving.reason)
    return scorer


def _task_of(registry, version: Optional[str]):
    """The parsed task of a registered version, or None (unregistered: every contact is a lead).

    Raises:
        RegistryError: the artifact names a task this version of leadpulse cannot parse (scoring
            it without its population would publish leads it was not trained for).
    """
    from leadpulse.model.registry import RegistryError
    from leadpulse.model.task import TaskError, parse_task
    if not version:
        return None
    query = registry.artifact(version).get("task")
    try:
        return parse_task(query) if query else None
    except TaskError as exc:
        raise RegistryError(f"model {version}: cannot parse its task {query!r}: {exc}") from exc


async def _retrain_process(settings: Settings, bootstrap: str, root: Path) -> int:
    """Run ``leadpulse retrain`` on this worker's store in a child process; its exit code."""
    import asyncio
    import os

    argv = [sys.executable, "-m", "leadpulse.stream.cli", "retrain", "--data-dir", str(root.parent)]
    if settings.retrain_epochs:
        argv += ["--epochs", str(settings.retrain_epochs)]
    # the rest of the connection (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_*, KAFKA_SASL_* and their _FILE
    # forms) comes with os.environ, as this worker read it; only the bootstrap may be the embedded one
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, LEADPULSE_MODEL_DIR=str(settings.models_path))
    with open(root / "retrain.log", "ab") as log:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=log)
        return await proc.wait()


def build_worker(settings: Settings, bootstrap: str, data_dir: Optional[Path] = None) -> WorkerParts:
    """Open the stores, load the model and build the Faust app (not started)."""
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.app import build_app
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.router import Router
    from leadpulse.stream.state import KVState

    root = Path(data_dir or settings.data_dir) / "worker"
    stack = ExitStack()
    store = RocksDBGraphStore(root / "graph")
    stack.callback(store.close)
    router_state = KVState(root / "router")
    stack.callback(router_state.close)
    book = KVState(root / "scores")
    stack.callback(book.close)
    metrics = Metrics()
    scorer = load_scorer(settings)
    if scorer is not None:
        metrics.set_model(scorer.version or "unregistered", scorer.serving.auroc)
    processor = AccountProcessor(store, book, scorer, settings.scoring_options(), metrics)
    if settings.outcome_window:  # live outcome monitoring (docs/operating.md#live-outcomes)
        from leadpulse.stream.outcomes import OutcomeMonitor
        processor.outcomes = OutcomeMonitor(book, store, metrics, settings.outcome_window)
    router = Router(router_state)
    app = build_app(settings.app_options(bootstrap, datadir=str(root / "faust")),
                    router, processor, metrics,
                    champion=lambda: _champion(settings),
                    load_scorer=lambda version: load_scorer(settings, version),
                    retrain=lambda: _retrain_process(settings, bootstrap, root))
    return WorkerParts(app, processor, router, metrics, stack)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.broker import broker_from_env
    from leadpulse.stream.connection import check_reachable
    from leadpulse.stream.topics_admin import TopicsError
    from leadpulse.stream.topicscmd import prepare_worker_topics

    if args.embedded and settings.kafka_bootstrap:
        print(f"leadpulse worker: --embedded starts its own broker, but KAFKA_BOOTSTRAP is set "
              f"({settings.kafka_bootstrap}): unset it, or drop --embedded", file=sys.stderr)
        return 2
    if not args.embedded and not settings.kafka_bootstrap:
        print("leadpulse worker: no Kafka configured: set KAFKA_BOOTSTRAP=host:port[,host:port] "
              "(or pass --embedded for development: an in-memory broker that loses every topic "
              "when the worker stops)", file=sys.stderr)
        return 2
    # the embedded broker's end offsets are wrong when producers batch (docs/kafka-notes.md#trap-1)
    if args.embedded:
        settings = settings.model_copy(update={"lag_seconds": 0.0})
    with broker_from_env(settings, embedded=args.embedded) as bootstrap:
        # the cause at once (refused, certificate, SASL mechanism), not a Kafka client's retries
        check_reachable(settings.kafka_connection(bootstrap))
        try:
            refusal = prepare_worker_topics(settings, bootstrap)
        except TopicsError as exc:
            print(f"leadpulse worker: cannot create or check the topics on {bootstrap}: {exc}", file=sys.stderr)
            return 2
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
        import faust  # only now: a refusal above stays instant

        parts = build_worker(settings, bootstrap)
        print(f"leadpulse worker: broker {bootstrap}; http://{settings.web_host}:{settings.web_port}"
              f"/metrics  /healthz  /leads/<contact_id>", flush=True)
        try:
            worker = faust.Worker(parts.app, loglevel=settings.log_level.lower(), quiet=True,
                                  override_logging=False)
            worker.execute_from_commandline()
        finally:
            parts.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker", help="run the scoring service (Faust worker)",
        description="Consume the CRM topics, apply them to the graph store, rescore affected leads "
                    "and publish score changes and alerts. Needs KAFKA_BOOTSTRAP. Creates missing topics "
                    "as `leadpulse topics create` does, and refuses to start when the input and account "
                    "topics differ in partition count or keep less than everything (unless "
                    "LEADPULSE_ALLOW_UNSAFE_TOPICS=true).")
    p.add_argument("--embedded", action="store_true",
                   help="development only: start an in-memory embedded broker instead of using "
                        "KAFKA_BOOTSTRAP (it loses every topic when the worker stops)")
    p.set_defaults(func=_run)

