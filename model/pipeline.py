"""Train challengers of every family, pick one on validation, promote it only if it beats the
champion on the newest held-out window.

One function serves ``leadpulse train`` (from a CSV export) and ``leadpulse retrain`` (from a
worker's graph store as it stands): both hand over a store and the span of its data.

Candidates (``model.registry.FAMILIES``, ``LEADPULSE_CANDIDATES``): the GNN, LightGBM with account aggregates
and the hybrid of the two (``model.hybrid``), fitted on the same split, the hybrid reusing the
other two. Each is registered (so any can be promoted by hand); the one with the best AUROC on
the **validation** cutoffs is the challenger the registry decides on against the champion, on
the newest held-out window (invariant 6). Choosing on validation keeps the held-out figure of
the chosen one honest: the test window is never used to pick among candidates
(docs/model.md#the-hybrid-and-the-champion-family). On a relaxed split the candidates are
judged on fits to the training labels censored at the first validation cutoff
(``model.evaluate.validation_aurocs``), and the fits on the whole labels are registered.

Below the minimum data (``MinimumData``, docs/model.md#minimum-data) the learned challenger is
registered and refused, and the rules model is fitted on the same split as the fallback: it is
promoted like any challenger (at once when there is no champion), so a previous champion keeps
serving unless the rules model beats it on the newest window.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from leadpulse.graph_store.base import GraphStore
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.baselines import LGBMAggModel
from leadpulse.model.evaluate import CENSORED, CENSORED_NOTE, RELAXED_NOTE, validation_aurocs
from leadpulse.model.examples import SplitOptions, build_split
from leadpulse.model.metrics import score_metrics
from leadpulse.model.registry import FAMILIES, Decision, MinimumData, ModelRegistry
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
    #: the model's family (``LeadModel.name``: "gnn", "lgbm_agg", "hybrid", "rules")
    family: Optional[str] = None
    #: every candidate fitted beside it: ``{"version", "family", "valid_auroc", "metrics"}``,
    #: the chosen one included (``valid_auroc``: what it was chosen on, from the fit to censored
    #: labels on a relaxed split; None when validation has a single class)
    candidates: list[dict] = field(default_factory=list)


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
                     minimum: Optional[MinimumData] = None,
                     families: Sequence[str] = FAMILIES) -> TrainResult:
    """Fit every family of ``families`` on ``store``'s data in ``[start, end]``, register each,
    and decide promotion on the one with the best validation AUROC.

    The test window is the latest whose labels are fully observed (``model.examples``); the
    champion is evaluated on exactly the same examples when it has no figure there yet. With
    ``minimum``, a challenger trained on less is refused and the rules model is fitted, registered and
    decided on instead (``TrainResult.fallback``). Default None: no minimum.

    Args:
        families: candidates among ``FAMILIES`` (the hybrid fits the GNN and ``lgbm_agg`` it
            needs even when they are not listed, without registering them). Default all.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown model families {unknown or families!r}; known: {', '.join(FAMILIES)}")
    began = time.perf_counter()
    split = build_split(store, task, start, end, split_options, cache_graphs=True)
    data = training_data(split.train, split.valid)
    fitted = fit_candidates(split.train, split.valid, families, train_options)
    valid, basis = validation_aurocs(split, fitted, lambda censored: fit_candidates(
        censored, split.valid, families, train_options))
    chosen = max(fitted, key=lambda n: (valid[n] if valid[n] is not None else -1.0, -families.index(n)))
    shown = ", ".join(f"{n} {v:.4f}" if v is not None else f"{n} unmeasured" for n, v in valid.items())
    candidates = []
    for name in families:
        if name != chosen:  # registered so it can be promoted by hand; not decided on
            metrics = evaluate_on(fitted[name], split.test)
            candidates.append({"version": _add(registry, fitted[name], split, task, data, metrics),
                               "family": name, "valid_auroc": valid[name], "metrics": metrics})
    short = minimum is not None and minimum.shortfall(data) is not None
    # short of data the choice is moot: the reason then starts with what was short
    note = (f"chosen among {len(fitted)} candidates on the validation AUROC ({shown})"
            if len(fitted) > 1 and not short else None)
    if note and split.plan.gap == "relaxed":
        note += f"; {CENSORED_NOTE if basis == CENSORED else RELAXED_NOTE}"
        if basis != CENSORED:
            logger.warning("%s", RELAXED_NOTE)
    result = _register(fitted[chosen], split, task, registry, data, minimum, began, note)
    candidates.insert(0, {"version": result.version, "family": chosen, "valid_auroc": valid[chosen],
                          "metrics": result.metrics})
    result = replace(result, candidates=candidates)
    if short:
        logger.warning("%s not promoted: %s; fitting the rules model instead", result.version,
                       result.decision.reason)
        rules = RulesModel().fit(split.train, split.valid, seed=train_options.seed)
        note = f"fallback for {result.version} ({result.decision.reason})"
        fallback = _register(rules, split, task, registry, data, minimum, time.perf_counter(), note)
        result = replace(result, fallback=fallback)
    return result


def fit_candidates(train: ExampleSet, valid: ExampleSet, families: Sequence[str],
                   options: TrainOptions = TrainOptions()) -> dict[str, LeadModel]:
    """Each family of ``families`` fitted on ``train`` (``valid`` for early stopping, calibration
    and the hybrid's head), by name, in ``families``' order; the hybrid reuses the GNN and
    ``lgbm_agg`` (fitted for it when they are not candidates themselves)."""
    from leadpulse.model.hybrid import HybridModel  # lazily: it loads LightGBM and the GNN both
    parts: dict[str, LeadModel] = {}

    def part(name: str) -> LeadModel:
        if name not in parts:
            parts[name] = (train_gnn(train, valid or None, options) if name == "gnn"
                           else LGBMAggModel(career=options.career).fit(train, valid or None, seed=options.seed))
        return parts[name]

    out: dict[str, LeadModel] = {}
    for name in families:
        if name == "hybrid":
            out[name] = HybridModel(gnn=part("gnn"), agg=part("lgbm_agg")).fit(train, valid or None,
                                                                              seed=options.seed)
        else:
            out[name] = part(name)
    return out


def _test_window(split, task: Task) -> list[int]:
    """The held-out window the test cutoffs' labels span (what the registry compares on)."""
    return [int(split.plan.test[0]), int(split.plan.test[-1]) + task.horizon]


def _add(registry: ModelRegistry, model: LeadModel, split, task: Task, data: dict, metrics: dict) -> str:
    return registry.register(model, task.query(), [split.plan.train[0], split.plan.train[-1]],
                             metrics=[{"window": _test_window(split, task), "metrics": metrics}],
                             parent=registry.champion(), training_data=data)


def _register(model: LeadModel, split, task: Task, registry: ModelRegistry, data: dict,
              minimum: Optional[MinimumData], began: float, note: Optional[str] = None) -> TrainResult:
    metrics = evaluate_on(model, split.test)
    window = _test_window(split, task)
    version = _add(registry, model, split, task, data, metrics)
    decision = registry.promote_if_better(version, evaluate=lambda champ, _w: evaluate_on(champ, split.test),
                                          minimum=minimum, note=note)
    return TrainResult(version, decision, metrics, window, time.perf_counter() - began, data, family=model.name)
