"""The rule baseline: a points-based BANT-style lead score (``RulePoints``, ``RulesModel``).

Fit points come from persona and account fit, engagement points from decayed activity; ``fit``
only learns a monotone (Platt) map from points to probability, so the ranking is the rule
score's ranking, and tier cut points as the GNN does (docs/model.md#calibration-and-tiers). A
lead's points read only its own attributes, its company's and its own activities as of t (one
hop), so scoring a k-hop union equals scoring the snapshot: the stream can serve it
(``model.scorer``), which is what it does below the minimum data (docs/model.md#minimum-data).
Its factors are its points (``explain_signed``).

Example:
    >>> from leadpulse.graph_store.base import Subgraph
    >>> g = Subgraph(as_of=0, node_ids={"contact": ["c1"]}, attrs={"contact": [{"seniority": "vp"}]})
    >>> RulesModel().points(g, ["c1"]).tolist()
    [20.0]
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.calibration import assign_tiers, fit_tier_card
from leadpulse.model.factors import Explanation
from leadpulse.model.tabular import View, seniority
from leadpulse.model.tabular_explain import explain_points
from leadpulse.model.values import as_number
from leadpulse.schemas.timeutil import MICROS_PER_DAY

__all__ = ["RulePoints", "RulesModel"]

FORMAT_VERSION = 2  # 2: tier cut points and rates (a version-1 file has neither: every lead tier D)


@dataclass(frozen=True)
class RulePoints:
    """Points of the rule score (a generic data-infrastructure SaaS ideal customer profile).

    Fit points come from the contact's seniority (or its title), department, the company's
    industry and head count; engagement points from each activity (and each pricing page view),
    halved every ``half_life_days`` and capped at ``engagement_cap``.
    """
    seniority: dict = field(default_factory=lambda: {
        "c_level": 20, "vp": 20, "director": 15, "manager": 8, "ic": 0})
    department: dict = field(default_factory=lambda: {
        "data": 10, "engineering": 10, "it": 8, "product": 5})
    industry: dict = field(default_factory=lambda: {
        "software": 15, "fintech": 12, "insurance": 6, "healthcare": 6, "telecom": 5,
        "biotech": 5, "education": -5, "government": -5})
    size_points: tuple = ((200, 5000, 10), (50, 20000, 5))  # (low, high, points), first match
    activity: dict = field(default_factory=lambda: {
        "page_view": 1, "email_open": 0.5, "email_click": 2, "form_fill": 8, "content_download": 5,
        "webinar_attended": 6, "demo_request": 25, "meeting": 15, "call": 10, "trial_signup": 20,
        "product_usage": 2, "invite_teammate": 10})
    pricing_page: float = 8.0
    half_life_days: float = 30.0
    engagement_cap: float = 100.0


class RulesModel(LeadModel):
    """Points-based lead score; ``fit`` only learns a monotone (Platt) map points -> probability."""
    name = "rules"
    learned = False  # the ranking is the points table's; fit only calibrates it

    def __init__(self, points: RulePoints = RulePoints()) -> None:
        self.rules = points
        self.a, self.b = 0.05, -4.0  # uncalibrated default: 0 points ~ 2 %, 80 points ~ 50 %
        self.tier_cuts: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.tier_rates: dict[str, Optional[float]] = {}
        self.tier_card: dict = {}  # what each tier meant on validation (``calibration.tier_card``)
        self.version: Optional[str] = None

    def points(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        """The rule score of each contact (fit + decayed engagement points)."""
        parts = self.point_parts(graph, contact_ids)
        # added in this order, the sum is the one the points were always summed in
        return parts[:, 0] + parts[:, 1] + parts[:, 2] + parts[:, 3] + parts[:, 4]

    def point_parts(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        """Each contact's points by part: ``(seniority, department, industry, size, engagement)``
        columns (``model.tabular_explain.RULE_PART_GROUPS``); ``points`` is their sum."""
        r, t = self.rules, graph.as_of
        view = View(graph)
        rows = view.rows(contact_ids)
        contacts, comps = view.attrs_of(rows)
        timelines = view.timelines_of(rows)
        out = np.zeros((len(contact_ids), 5))
        for i, (c, k) in enumerate(zip(contacts, comps)):
            emp = as_number(k.get("employees"))
            eng = 0.0
            for event in timelines[i]:
                when, kind = event[0], event[1]
                if when > t:
                    continue
                pts = r.activity.get(kind, 0.0) + (r.pricing_page if len(event) > 2 and event[2] == "pricing" else 0.0)
                eng += pts * 0.5 ** ((t - when) / MICROS_PER_DAY / r.half_life_days)
            out[i] = (r.seniority.get(seniority(c), 0), r.department.get(str(c.get("department") or "").lower(), 0),
                      r.industry.get(str(k.get("industry") or "").lower(), 0),
                      next((p for lo, hi, p in r.size_points if lo <= emp <= hi), 0), min(eng, r.engagement_cap))
        return out

    def explain_signed(self, graph: Subgraph, contact_ids: Sequence[str], top_k: int = 5,
                       min_abs: float = 1e-4) -> list[Explanation]:
        """Each lead's factors from its points: fit points as ``title`` and ``firmographics``,
        engagement points as ``own_activity``, each in probability points through the Platt map
        (against a lead with no points; ``model.tabular_explain``)."""
        return explain_points(graph, contact_ids, self.point_parts(graph, contact_ids), self.a, self.b,
                              top_k, min_abs)

    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "LeadModel":
        pts = [self.points(ex.graph(), ex.contact_ids) for ex in train if ex.contact_ids]
        x = np.concatenate(pts) if pts else np.zeros(0)
        y = np.concatenate([np.asarray(ex.labels, float) for ex in train if ex.contact_ids]) if pts else x
        w = np.concatenate([ex.example_weights() for ex in train if ex.contact_ids]) if pts else x
        keep = ~np.isnan(y)
        x, y, w = x[keep], y[keep], w[keep]
        if y.size and 0 < y.sum() < y.size:
            # weights undo a subsampling of negatives, so the map sees the true base rate
            clf = LogisticRegression(C=1e4, max_iter=1000, random_state=seed).fit(
                x[:, None] / 100.0, y, sample_weight=None if np.all(w == 1.0) else w)
            a = float(clf.coef_[0, 0]) / 100.0
            if a > 0:  # keep the map monotone increasing; otherwise keep the default
                self.a, self.b = a, float(clf.intercept_[0])
        elif y.size:
            rate = float(np.average(y, weights=w))
            self.a, self.b = 0.0, float(np.log(max(rate, 1e-6) / max(1 - rate, 1e-6)))
        self._fit_tiers(valid, x, y)
        return self

    def _fit_tiers(self, valid: Optional[ExampleSet], x: np.ndarray, y: np.ndarray) -> None:
        """Tier cut points and rates on the validation cutoffs (the training ones without)."""
        held = [ex for ex in valid or () if ex.contact_ids]
        if held:
            proba = np.concatenate([self.predict_proba(ex.graph(), ex.contact_ids) for ex in held])
            y = np.concatenate([np.asarray(ex.labels, float) for ex in held])
        else:
            proba = 1.0 / (1.0 + np.exp(-(self.a * x + self.b)))
        keep = ~np.isnan(y)
        fitted = fit_tier_card(proba[keep], y[keep])
        if fitted is not None:
            self.tier_cuts, self.tier_rates, self.tier_card = fitted

    def tiers(self, proba: np.ndarray) -> list[str]:
        """Tier letter per probability (``tier_cuts``), as ``GNNLeadModel.tiers``."""
        return assign_tiers(proba, self.tier_cuts)

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        z = self.a * self.points(graph, contact_ids) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"format_version": FORMAT_VERSION, "name": self.name, "a": self.a, "b": self.b,
                 "points": asdict(self.rules), "tier_cuts": list(self.tier_cuts),
                 "tier_rates": {k: (None if v is None or v != v else v) for k, v in self.tier_rates.items()},
                 "tier_card": self.tier_card}
        (path / "model.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: Path) -> "LeadModel":
        state = json.loads((Path(path) / "model.json").read_text())
        if state.get("name") != cls.name:
            raise ValueError(f"{path} holds {state.get('name')!r}, not {cls.name!r}")
        pts = state["points"]
        pts["size_points"] = tuple(tuple(x) for x in pts["size_points"])
        model = cls(RulePoints(**pts))
        model.a, model.b = state["a"], state["b"]
        model.tier_cuts = tuple(state.get("tier_cuts", model.tier_cuts))
        model.tier_rates = dict(state.get("tier_rates") or {})  # None for an empty tier, as calibration
        model.tier_card = dict(state.get("tier_card") or {})  # none before: ``card_of`` reads the rates
        return model
