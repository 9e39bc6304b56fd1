"""Train a challenger, evaluate it on the newest held-out window, promote only if better.

One function serves ``leadpulse train`` (from a CSV export) and ``leadpulse retrain`` (from a
worker's graph store as it stands): both hand over a store and the span of its data.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from leadpulse.graph_store.base import GraphStore
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.examples import SplitOptions, build_split
from leadpulse.model.metrics import score_metrics
from leadpulse.model.registry import Decision, ModelRegistry
from leadpulse.model.task import Task
from leadpulse.model.train import TrainOptions, train_gnn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    version: str
    decision: Decision
    metrics: dict
    window: list[int]
    seconds: float


def evaluate_on(model: LeadModel, examples: ExampleSet) -> dict:
    """Held-out metrics of ``model`` over every cutoff of ``examples`` (pooled)."""
    labels, scores = [], []
    for ex in examples:
        if not ex.contact_ids:
            continue
        labels.append(ex.labels)
        scores.append(model.predict_proba(ex.graph(), ex.contact_ids))
    if not labels:
        return {}
    m = score_metrics(np.concatenate(labels), np.concatenate(scores)).to_dict()
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}


def train_challenger(store: GraphStore, start: int, end: int, task: Task, registry: ModelRegistry,
                     train_options: TrainOptions = TrainOptions(),
                     split_options: SplitOptions = SplitOptions()) -> TrainResult:
    """Train a GNN on ``store``'s data in ``[start, end]``, register it and decide promotion.

    The test window is the latest whose labels are fully observed (``model.examples``); the
    champion is evaluated on exactly the same examples when it has no figure there yet.
    """
    began = time.perf_counter()
    split = build_split(store, task, start, end, split_options, cache_graphs=True)
    model = train_gnn(split.train, split.valid, train_options)
    metrics = evaluate_on(model, split.test)
    window = [int(split.plan.test[0]), int(split.plan.test[-1]) + task.horizon]
    parent: Optional[str] = registry.champion()
    version = registry.register(model, task.query(), [split.plan.train[0], split.plan.train[-1]],
                                metrics=[{"window": window, "metrics": metrics}], parent=parent)
    decision = registry.promote_if_better(version, evaluate=lambda champ, _w: evaluate_on(champ, split.test))
    return TrainResult(version, decision, metrics, window, time.perf_counter() - began)
