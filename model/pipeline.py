"""Train a challenger, evaluate it on the newest held-out window, promote only if better.

One function serves ``leadpulse train`` (from a CSV export) and ``leadpulse retrain`` (from a
worker's graph store as it stands): both hand over a store and the span of its data.

Below the minimum data (``MinimumData``, docs/model.md#minimum-data) the learned challenger is
registered and refused, and the rules model is fitted on the same split as the fallback: it is
promoted like any challenger (at once when there is no champion), so a previous champion keeps
serving unless the rules model beats it on the newest window.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from leadpulse.graph_store.base import GraphStore
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.examples import SplitOptions, build_split
from leadpulse.model.metrics import score_metrics
from leadpulse.model.registry import Decision, MinimumData, ModelRegistry
from leadpulse.model.rules import RulesModel
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
    #: what the challenger learned from: distinct leads with an example and with a positive label
    training_data: Optional[dict] = None
    #: the rules model fitted instead when the learned challenger was short of data
    fallback: Optional["TrainResult"] = None


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


def training_data(train: ExampleSet, valid: ExampleSet = ()) -> dict:
    """``{"examples", "positives"}``: distinct leads with an example in the training and
    validation cutoffs, and with a positive label there (a converter counts once, however many
    weekly cutoffs see its order coming; subsampled negatives are not counted)."""
    leads: set[str] = set()
    positives: set[str] = set()
    for ex in (*train, *valid):
        leads.update(ex.contact_ids)
        positives.update(c for c, y in zip(ex.contact_ids, np.asarray(ex.labels, float)) if y > 0)
    return {"examples": len(leads), "positives": len(positives)}


def train_challenger(store: GraphStore, start: int, end: int, task: Task, registry: ModelRegistry,
                     train_options: TrainOptions = TrainOptions(),
                     split_options: SplitOptions = SplitOptions(),
                     minimum: Optional[MinimumData] = None) -> TrainResult:
    """Train a GNN on ``store``'s data in ``[start, end]``, register it and decide promotion.

    The test window is the latest whose labels are fully observed (``model.examples``); the
    champion is evaluated on exactly the same examples when it has no figure there yet. With
    ``minimum``, a GNN trained on less is refused and the rules model is fitted, registered and
    decided on instead (``TrainResult.fallback``). Default None: no minimum.
    """
    began = time.perf_counter()
    split = build_split(store, task, start, end, split_options, cache_graphs=True)
    data = training_data(split.train, split.valid)
    model = train_gnn(split.train, split.valid, train_options)
    result = _register(model, split, task, registry, data, minimum, began)
    if minimum is not None and minimum.shortfall(data) is not None:
        logger.warning("%s not promoted: %s; fitting the rules model instead", result.version,
                       result.decision.reason)
        rules = RulesModel().fit(split.train, split.valid, seed=train_options.seed)
        note = f"fallback for {result.version} ({result.decision.reason})"
        fallback = _register(rules, split, task, registry, data, minimum, time.perf_counter(), note)
        result = replace(result, fallback=fallback)
    return result


def _register(model: LeadModel, split, task: Task, registry: ModelRegistry, data: dict,
              minimum: Optional[MinimumData], began: float, note: Optional[str] = None) -> TrainResult:
    metrics = evaluate_on(model, split.test)
    window = [int(split.plan.test[0]), int(split.plan.test[-1]) + task.horizon]
    parent: Optional[str] = registry.champion()
    version = registry.register(model, task.query(), [split.plan.train[0], split.plan.train[-1]],
                                metrics=[{"window": window, "metrics": metrics}], parent=parent,
                                training_data=data)
    decision = registry.promote_if_better(version, evaluate=lambda champ, _w: evaluate_on(champ, split.test),
                                          minimum=minimum, note=note)
    return TrainResult(version, decision, metrics, window, time.perf_counter() - began, data)
