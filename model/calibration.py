"""From a raw GNN logit to what is published: a calibrated probability and a tier letter.

Platt scaling (``sigmoid(a * logit + b)``) and the tier cut points are fit on the validation
cutoffs and stored with the model. Tiers are thresholds on the calibrated probability, not
ranks, so a lead's tier does not depend on its batch (docs/model.md#calibration-and-tiers).

Example:
    >>> assign_tiers([0.9, 0.5, 0.2, 0.01], (0.8, 0.4, 0.1))
    ['A', 'B', 'C', 'D']
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from scipy.special import expit

logger = logging.getLogger(__name__)

__all__ = ["Calibration", "TIERS", "assign_tiers", "fit_tiers"]

TIERS = ("A", "B", "C", "D")
#: quantiles of the calibrated validation scores that become the A, B and C cut points
#: (A = top 5 %, B = next 15 %, C = next 30 %, D = the rest, at validation time)
TIER_QUANTILES = (0.95, 0.80, 0.50)


class Calibration:
    """Platt scaling of the raw logit: ``p = sigmoid(a * logit + b)`` (fit on validation)."""

    def __init__(self, a: float = 1.0, b: float = 0.0):
        self.a, self.b = float(a), float(b)

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> "Calibration":
        from sklearn.linear_model import LogisticRegression
        y = np.asarray(labels)
        if len(np.unique(y)) < 2:
            logger.warning("calibration skipped: validation has one class only")
            return cls()
        lr = LogisticRegression(C=1e4, max_iter=1000)
        lr.fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), y.astype(int))
        return cls(lr.coef_[0, 0], lr.intercept_[0])

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(logits, dtype=np.float64) + self.b
        return expit(z)  # no overflow for very negative z, unlike 1 / (1 + exp(-z))

    def to_dict(self) -> dict:
        return {"method": "platt", "a": self.a, "b": self.b}


def assign_tiers(proba: Sequence[float], cuts: tuple[float, float, float]) -> list[str]:
    """Tier letter per calibrated probability: ``p >= cut`` -> that cut's tier."""
    a, b, c = cuts
    p = np.asarray(proba)
    idx = np.where(p >= a, 0, np.where(p >= b, 1, np.where(p >= c, 2, 3)))
    return [TIERS[i] for i in idx]


def fit_tiers(proba: np.ndarray, y: np.ndarray) -> Optional[tuple[tuple[float, float, float], dict[str, float]]]:
    """``(cut points, observed positive rate per tier)`` on calibrated validation scores, or
    None without scores. The rates make "tier A converted at x %" a measured statement."""
    if not len(proba):
        return None
    cuts = tuple(float(np.quantile(proba, q)) for q in TIER_QUANTILES)
    tiers = np.array(assign_tiers(proba, cuts))
    rates = {t: float(y[tiers == t].mean()) if (tiers == t).any() else float("nan") for t in TIERS}
    return cuts, rates
