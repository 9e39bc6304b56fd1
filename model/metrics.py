"""Ranking and calibration metrics of a set of scored examples.

A metric that is undefined on the data (AUROC with a single class, lift with no positives) is
``None``, never NaN or an exception, and ``Metrics.notes`` says why.

Example:
    >>> m = score_metrics([0, 0, 1, 0, 1, 0, 0, 0, 0, 0], [.1, .2, .9, .5, .4, .1, .2, .1, .0, .2])
    >>> round(m.auroc, 3), round(m.average_precision, 3), m.precision_at_top, m.lift_at_top
    (0.938, 0.833, 1.0, 5.0)
    >>> score_metrics([0, 0], [0.1, 0.2]).auroc is None
    True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

__all__ = ["Metrics", "score_metrics", "precision_at_top", "expected_calibration_error"]

TOP_FRACTION = 0.1


@dataclass(frozen=True)
class Metrics:
    """Metrics of one model on one example set.

    Attributes:
        auroc: area under the ROC curve (None with a single class).
        average_precision: area under the precision-recall curve (None without positives).
        precision_at_top: share of positives among the top ``top_fraction`` by score.
        lift_at_top: ``precision_at_top`` over the base rate (None without positives).
        brier: mean squared error of the probabilities.
        ece: expected calibration error over 10 equal-width probability bins.
        n: number of examples; positives: number of positive labels.
        top_fraction: the "top decile" fraction (0.1).
        notes: why a metric is None.
    """
    auroc: Optional[float]
    average_precision: Optional[float]
    precision_at_top: Optional[float]
    lift_at_top: Optional[float]
    brier: Optional[float]
    ece: Optional[float]
    n: int
    positives: int
    top_fraction: float = TOP_FRACTION
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


def precision_at_top(labels: np.ndarray, scores: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Share of positives among the ``ceil(fraction * n)`` highest scores.

    Ties at the boundary are broken by input order (a stable sort), so the figure is deterministic.
    """
    k = max(1, math.ceil(fraction * len(labels)))
    order = np.argsort(-scores, kind="stable")[:k]
    return float(labels[order].mean())


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width probability bins of ``|mean label - mean score| * share of examples``."""
    idx = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += abs(labels[mask].mean() - scores[mask].mean()) * mask.mean()
    return float(total)


def score_metrics(labels: Sequence[float], scores: Sequence[float],
                  top_fraction: float = TOP_FRACTION) -> Metrics:
    """All metrics of probabilities ``scores`` against 0/1 ``labels`` (NaN labels are dropped)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and scores {p.shape} differ in shape")
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    n, pos = int(y.size), int(y.sum())
    notes: list[str] = []
    if n == 0:
        return Metrics(None, None, None, None, None, None, 0, 0, top_fraction, ("no labelled examples",))
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("scores must be finite probabilities in [0, 1]")
    auroc = ap = lift = None
    if 0 < pos < n:
        auroc = float(roc_auc_score(y, p))
    else:
        notes.append("AUROC undefined: every label is " + ("positive" if pos else "negative"))
    if pos:
        ap = float(average_precision_score(y, p))
    else:
        notes.append("AP and lift undefined: no positives")
    prec = precision_at_top(y, p, top_fraction)
    if pos:
        lift = prec / (pos / n)
    return Metrics(auroc, ap, prec, lift, float(brier_score_loss(y, p)),
                   expected_calibration_error(y, p), n, pos, top_fraction, tuple(notes))
