"""The training loop of the GNN lead model: graph preparation, the epochs, calibration, tiers.

Each cutoff's graph is built once (``CutoffExamples.graph()``), extracted, and — after the
``FeatureSpec`` is fit on the training graphs only — encoded into cached tensors. A graph with
more than ``max_full_nodes`` nodes is replaced by the exact 2-hop subgraph of a sample of its
labelled contacts (training: all positives plus sampled negatives; validation: a uniform
sample, so calibration sees the true base rate).

``fit`` returns what it learnt (``Fitted``); ``GNNLeadModel.fit`` keeps it. The loop knows
the network and the options, never the model class, so the model can call it.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from leadpulse.model.base import CutoffExamples, ExampleSet
from leadpulse.model.calibration import Calibration, fit_tier_card
from leadpulse.model.features import FeatureSpec, RawGraph, extract, khop_subgraph, seed_index
from leadpulse.model.gnn_net import EnsembleSAGE, HeteroSAGE, edge_index_dict
from leadpulse.model.gnn_options import Loss, Monitor, OptimOptions, TrainOptions
from leadpulse.schemas.types import CONTACT, NODE_TYPES

logger = logging.getLogger(__name__)

__all__ = ["Fitted", "fit"]


@dataclass
class Fitted:
    """What ``fit`` learnt. ``tiers`` is ``(cut points, rate per tier)``, None without scores."""
    spec: FeatureSpec
    net: nn.Module
    calibration: Calibration
    tiers: Optional[tuple[tuple[float, float, float], dict[str, float]]]
    history: list[dict]
    #: the tiers measured on the validation leads (``calibration.tier_card``), None without scores
    tier_card: Optional[dict] = None


@dataclass
class _Prepared:
    raw: Optional[RawGraph]
    seeds: np.ndarray  # local contact indices of the labelled contacts
    labels: np.ndarray
    weights: np.ndarray  # importance weights (1 unless negatives were subsampled)
    data: object = None
    seed_t: Optional[torch.Tensor] = None
    label_t: Optional[torch.Tensor] = None
    weight_t: Optional[torch.Tensor] = None


def _prepare(ex: CutoffExamples, opts: TrainOptions, rng: np.random.Generator, training: bool) -> Optional[_Prepared]:
    labels = np.asarray(ex.labels, dtype=np.float64)
    weights = ex.example_weights()
    ok = ~np.isnan(labels)
    sg = ex.graph().recent_activities(opts.activity_days)   # the window the spec will encode with
    pos = {cid: i for i, cid in enumerate(sg.node_ids.get(CONTACT, []))}
    present = np.array([c in pos for c in ex.contact_ids], dtype=bool) if ex.contact_ids else np.zeros(0, bool)
    if len(present) and not present.all():
        logger.warning("cutoff %s: %d labelled contacts absent from the graph (skipped)",
                       ex.as_of, int((~present).sum()))
    ok &= present
    ids = [c for c, k in zip(ex.contact_ids, ok) if k]
    labels, weights = labels[ok], weights[ok]
    if not ids:
        return None
    local = seed_index(sg, ids)
    n_nodes = sum(len(sg.node_ids.get(t, [])) for t in NODE_TYPES)
    s = opts.sampling
    if n_nodes > s.max_full_nodes:
        if training:
            pos_i = np.flatnonzero(labels > 0.5)
            neg_i = np.flatnonzero(labels <= 0.5)
            k = min(len(neg_i), max(s.min_negatives, s.neg_per_pos * len(pos_i)))
            pick = np.sort(np.concatenate([pos_i, rng.choice(neg_i, size=k, replace=False)]))
            weights = weights.copy()
            weights[neg_i] *= len(neg_i) / max(k, 1)  # the kept negatives stand for all of them
        else:
            k = min(len(ids), s.max_valid_seeds)
            pick = np.sort(rng.choice(len(ids), size=k, replace=False))
        sub = khop_subgraph(sg, local[pick], hops=opts.arch.layers)
        logger.info("cutoff %s: %d nodes > %d, using the 2-hop subgraph of %d seeds (%d nodes)",
                    ex.as_of, n_nodes, s.max_full_nodes, len(pick),
                    sum(len(v) for v in sub.node_ids.values()))
        return _Prepared(raw=extract(sub), seeds=np.asarray(sub.seeds), labels=labels[pick],
                         weights=weights[pick])
    return _Prepared(raw=extract(sg), seeds=local, labels=labels, weights=weights)


def _encode(p: _Prepared, spec: FeatureSpec) -> None:
    p.data, _ = spec.encode(p.raw)
    p.seed_t = torch.as_tensor(p.seeds, dtype=torch.long)
    p.label_t = torch.as_tensor(p.labels, dtype=torch.float32)
    # None when every weight is 1: the unweighted mean, bit for bit
    p.weight_t = None if np.all(p.weights == 1.0) else torch.as_tensor(p.weights, dtype=torch.float32)
    p.raw = None  # free the attribute dicts; tensors are all we need from here


def _loss(logits: torch.Tensor, y: torch.Tensor, o: OptimOptions, pos_weight: float,
          w: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-example loss, averaged with the importance weights ``w`` (None = plain mean)."""
    if o.loss is Loss.WEIGHTED:
        per = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, pos_weight=torch.tensor(pos_weight), reduction="none")
    else:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * y + (1 - p) * (1 - y)
        alpha_t = o.focal_alpha * y + (1 - o.focal_alpha) * (1 - y)
        per = alpha_t * (1 - p_t) ** o.focal_gamma * bce
    return per.mean() if w is None else (per * w).sum() / w.sum()


def _predict(net: nn.Module, p: _Prepared) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        return net(p.data.x_dict, edge_index_dict(p.data), p.seed_t).double().numpy()


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def fit(opts: TrainOptions, train: ExampleSet, valid: Optional[ExampleSet] = None) -> Fitted:
    """Train with ``opts`` (its ``seed`` included): early stopping on the validation cutoffs,
    Platt calibration and tier cut points on them (on the training cutoffs when there are none)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(opts.seed)
    tr = [p for p in (_prepare(ex, opts, rng, True) for ex in train) if p is not None]
    va = [p for p in (_prepare(ex, opts, rng, False) for ex in (valid or [])) if p is not None]
    if not tr:
        raise ValueError("no labelled training contacts found in the training graphs")
    spec = FeatureSpec.fit([p.raw for p in tr], min_count=opts.min_count, drop=() if opts.career else ("career",),
                           activity_days=opts.activity_days)
    for p in tr + va:
        _encode(p, spec)
    y_tr = np.concatenate([p.labels for p in tr])
    w_tr = np.concatenate([p.weights for p in tr])
    pos_weight = float((w_tr * (1 - y_tr)).sum() / max((w_tr * y_tr).sum(), 1.0))
    logger.info("prepared %d train / %d valid cutoffs in %.1fs (%d labelled, %.2f%% positive)",
                len(tr), len(va), time.perf_counter() - t0, len(y_tr), 100 * y_tr.mean())

    y_va = np.concatenate([p.labels for p in va]) if va else np.zeros(0)
    monitor = va if va and 0 < y_va.sum() < len(y_va) else tr  # no usable valid: monitor train
    history: list[dict] = []
    members = []
    ensemble = opts.arch.ensemble
    for i in range(max(1, ensemble)):
        # member 0 uses the model seed itself, so ensemble=1 is exactly the single-net recipe
        net, member_history = _train_member(spec, tr, monitor, opts, opts.seed + 1000 * i, pos_weight)
        members.append(net)
        history += [{**h, "member": i} for h in member_history] if ensemble > 1 else member_history
    net = members[0] if len(members) == 1 else EnsembleSAGE(members)
    net.eval()

    cal_set = va if va else tr
    logits = np.concatenate([_predict(net, p) for p in cal_set])
    y_cal = np.concatenate([p.labels for p in cal_set])
    calibration = Calibration.fit(logits, y_cal)
    fitted = fit_tier_card(calibration(logits), y_cal)
    tiers, card = (fitted[:2], fitted[2]) if fitted is not None else (None, None)
    logger.info("trained gnn: %d member(s), %d epochs in all, %.1fs", len(members),
                len(history), time.perf_counter() - t0)
    return Fitted(spec=spec, net=net, calibration=calibration, tiers=tiers, history=history, tier_card=card)


def _train_member(spec: FeatureSpec, tr: list[_Prepared], monitor: list[_Prepared], opts: TrainOptions,
                  seed: int, pos_weight: float) -> tuple[HeteroSAGE, list[dict]]:
    """One network: Adam, one full-batch step per training cutoff per epoch (shuffled), early
    stopping on the monitor set (validation; never the test cutoff); the best state is kept."""
    o = opts.optim
    torch.manual_seed(seed)
    net = HeteroSAGE(spec.dims(), opts.arch)
    optim = torch.optim.Adam(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    y_mon = np.concatenate([p.labels for p in monitor])
    metric = _auroc if o.monitor is Monitor.AUROC else _ap
    monitor_key = f"monitor_{o.monitor.value}"
    best = (-np.inf, None, -1)
    history = []
    order_rng = np.random.default_rng(seed + 1)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()} if o.ema > 0 else None
    for epoch in range(o.epochs):
        net.train()
        losses = []
        for i in order_rng.permutation(len(tr)):
            p = tr[i]
            optim.zero_grad()
            out = net(p.data.x_dict, edge_index_dict(p.data), p.seed_t)
            loss = _loss(out, p.label_t, o, pos_weight, p.weight_t)
            loss.backward()
            optim.step()
            losses.append(loss.item())
            if ema is not None:
                with torch.no_grad():
                    for k, v in net.state_dict().items():
                        ema[k].mul_(o.ema).add_(v.detach(), alpha=1.0 - o.ema)
        live = None
        if ema is not None:  # monitor (and keep) the averaged weights
            live = copy.deepcopy(net.state_dict())
            net.load_state_dict(ema)
        s_mon = np.concatenate([_predict(net, p) for p in monitor])
        value = metric(y_mon, s_mon)
        score = value if np.isfinite(value) else -float(np.mean(losses))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), monitor_key: value})
        if score > best[0] + 1e-6:
            best = (score, copy.deepcopy(net.state_dict()), epoch)
        if live is not None:
            net.load_state_dict(live)
        if epoch - best[2] >= o.patience:
            break
    net.load_state_dict(best[1])
    net.eval()
    logger.info("gnn member (seed %d): best epoch %d (monitor %s %.4f), %d epochs", seed, best[2],
                o.monitor.value, best[0], len(history))
    return net, history
