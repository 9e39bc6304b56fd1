"""From a raw GNN logit to what is published: a calibrated probability and a tier letter.

Platt scaling (``sigmoid(a * logit + b)``) and the tier cut points are fit on the validation
cutoffs and stored with the model. Tiers are thresholds on the calibrated probability, not
ranks, so a lead's tier does not depend on its batch (docs/model.md#calibration-and-tiers).

Tier cuts are sized for what a sales team does with them (``TIER_SHARES``): A is the top 10 %
of validation scores, the leads a team can call within a day or two (and the top decile
whose precision the evaluation reports, P@10 %); B the next 20 %, worked this week by
sequence; C the next 30 %, marketing nurture; D the bottom 40 %, automation only. Each tier
comes with how often its leads converted at validation (``tier_card``), so "tier A" always
reads with "converted at x %, y times the average lead".

Example:
    >>> assign_tiers([0.9, 0.5, 0.2, 0.01], (0.8, 0.4, 0.1))
    ['A', 'B', 'C', 'D']
    >>> card = tier_card(np.array([0.9, 0.5, 0.2, 0.01]), np.array([1, 0, 1, 0]), (0.8, 0.4, 0.1))
    >>> [(t["tier"], t["share"], t["conversion_rate"]) for t in card["tiers"]][:2], card["base_rate"]
    ([('A', 0.25, 1.0), ('B', 0.25, 0.0)], 0.5)
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from scipy.special import expit

logger = logging.getLogger(__name__)

__all__ = ["Calibration", "TIERS", "TIER_SHARES", "TIER_ACTIONS", "assign_tiers", "fit_tiers", "fit_tier_card", "tier_card",
           "card_from_rates", "card_of"]

TIERS = ("A", "B", "C", "D")
#: share of the validation leads in tiers A, B and C (D: the rest, 40 %)
TIER_SHARES = (0.10, 0.20, 0.30)
#: quantiles of the calibrated validation scores that become the A, B and C cut points
TIER_QUANTILES = tuple(round(1.0 - sum(TIER_SHARES[:i + 1]), 6) for i in range(3))  # (0.9, 0.7, 0.4)
#: what a sales team does with each tier (the reason for its size)
TIER_ACTIONS = {
    "A": "call within a day or two (top 10 % at validation)",
    "B": "work this week, by sequence (next 20 %)",
    "C": "marketing nurture (next 30 %)",
    "D": "automation only (bottom 40 %)",
}


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


def fit_tiers(proba: np.ndarray, y: np.ndarray) -> Optional[tuple[tuple[float, float, float], dict[str, Optional[float]]]]:
    """``(cut points, observed positive rate per tier)`` on calibrated validation scores, or
    None without scores: the ``TIER_QUANTILES`` of the scores. The rates make "tier A converted
    at x %" a measured statement; ``tier_card`` adds shares, counts and lift."""
    if not len(proba):
        return None
    cuts = tuple(float(np.quantile(proba, q)) for q in TIER_QUANTILES)
    tiers = np.array(assign_tiers(proba, cuts))
    # None, not NaN, for an empty tier: model.json stays strict JSON
    rates = {t: float(y[tiers == t].mean()) if (tiers == t).any() else None for t in TIERS}
    return cuts, rates


def fit_tier_card(proba: np.ndarray, y: np.ndarray) -> Optional[tuple[tuple[float, float, float],
                                                                      dict[str, Optional[float]], dict]]:
    """``(cut points, rate per tier, tier card)`` of calibrated validation scores: ``fit_tiers``
    and the ``tier_card`` of its cuts on the same leads. None without scores."""
    tiers = fit_tiers(proba, y)
    return None if tiers is None else (*tiers, tier_card(proba, y, tiers[0]))


def tier_card(proba: np.ndarray, y: np.ndarray, cuts: tuple[float, float, float]) -> dict:
    """What each tier means, measured on the validation leads (the model card's tier table).

    Returns:
        ``{"basis": "validation", "leads", "converted", "base_rate", "tiers": [{"tier",
        "min_score" (the cut; 0 for D), "share" (of the validation leads), "leads", "converted",
        "conversion_rate" (None when empty), "lift" (rate over base rate), "action"}, ...]}``.
    """
    p, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.float64)
    tiers = np.array(assign_tiers(p, cuts)) if len(p) else np.array([], dtype=str)
    base = float(y.mean()) if len(y) else None
    rows = []
    for t, cut in zip(TIERS, tuple(cuts) + (0.0,)):
        m = tiers == t
        n, k = int(m.sum()), int(y[m].sum())
        rate = k / n if n else None
        rows.append({"tier": t, "min_score": float(cut), "share": n / len(p) if len(p) else None,
                     "leads": n, "converted": k, "conversion_rate": rate,
                     "lift": rate / base if rate is not None and base else None, "action": TIER_ACTIONS[t]})
    return {"basis": "validation", "leads": int(len(p)), "converted": int(y.sum()), "base_rate": base,
            "tiers": rows}


def card_from_rates(cuts: Sequence[float], rates: dict) -> dict:
    """The tier card of a model saved before cards existed: its cuts and per-tier rates only
    (shares, counts and lift unknown: None)."""
    rows = [{"tier": t, "min_score": float(cut), "share": None, "leads": None, "converted": None,
             "conversion_rate": _finite(rates.get(t)), "lift": None, "action": TIER_ACTIONS[t]}
            for t, cut in zip(TIERS, tuple(cuts) + (0.0,))]
    return {"basis": "validation", "leads": None, "converted": None, "base_rate": None, "tiers": rows}


def _finite(v) -> Optional[float]:
    return float(v) if v is not None and np.isfinite(v) else None


def card_of(model) -> Optional[dict]:
    """A served model's tier card: the one measured at fit time, else one from its stored cuts
    and rates (an older model, the rules model), else None (a model without tiers)."""
    card = getattr(model, "tier_card", None)
    if card:
        return card
    cuts = getattr(model, "tier_cuts", None)
    return card_from_rates(cuts, getattr(model, "tier_rates", None) or {}) if cuts is not None else None
