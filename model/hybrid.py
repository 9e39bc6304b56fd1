"""The hybrid lead model: the GNN and LightGBM on account aggregates, stacked
(docs/model.md#the-hybrid-and-the-champion-family).

The GNN reads a lead's two-hop neighbourhood through learned messages; ``lgbm_agg`` reads the
same neighbourhood through hand-built account aggregates. They miss different things (on our
worlds each wins some seeds), so the hybrid fits both on the training cutoffs and combines
their logits with a logistic head fit on the **validation** cutoffs::

    p = sigmoid(w_gnn * logit(p_gnn) + w_agg * logit(p_agg) + b)

Why a head fit on validation and not a gradient-boosted head over the GNN's logit or
embedding beside the aggregates (measured, docs/model.md): on the training cutoffs the GNN's
output is in-sample, far better than it is on unseen cutoffs, so a head fitted there learns to
trust it and lands *below* ``lgbm_agg`` wherever the GNN generalises worse (small world 2:
0.795 with the logit, 0.760 with the embedding, against 0.828). On the validation cutoffs both
parts are out of sample; three parameters need few positives; a weak part gets a small weight.

Both parts read only the lead's two-hop neighbourhood as of t, so scoring a k-hop union equals
scoring the snapshot, and the stream serves the hybrid through the same incremental path.

Fitting reuses parts already fitted on the same split (``HybridModel(gnn=..., agg=...)``: the
evaluation and the retrain job fit each once for every candidate); the missing ones are fitted
first. Without validation cutoffs the head is fitted on the training ones (and says so).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.special import expit
from scipy.special import logit as _logit
from sklearn.linear_model import LogisticRegression

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.baselines import LGBMAggModel, LGBMOptions
from leadpulse.model.calibration import assign_tiers, fit_tier_card
from leadpulse.model.factors import Explanation, Factor, sign_split
from leadpulse.model.features import Encoded, encode_graph, to_hetero_data
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.gnn_options import TrainOptions
from leadpulse.model.tabular import TableRows

logger = logging.getLogger(__name__)

__all__ = ["HybridModel", "Blend"]

#: every group of a part's explanation (``model.factors.GROUPS`` has 11)
_ALL = 64

FORMAT_VERSION = 1
_GNN_DIR, _AGG_DIR = "gnn", "lgbm_agg"
#: a part's probability this close to 0 or 1 is clipped before its logit
_EPS = 1e-7


class Blend:
    """The head: ``sigmoid(w_gnn * z_gnn + w_agg * z_agg + b)`` over the parts' logits."""

    def __init__(self, w_gnn: float = 0.5, w_agg: float = 0.5, b: float = 0.0, fitted_on: str = "none"):
        self.w_gnn, self.w_agg, self.b, self.fitted_on = float(w_gnn), float(w_agg), float(b), fitted_on

    @classmethod
    def fit(cls, z: np.ndarray, y: np.ndarray, w: Optional[np.ndarray], fitted_on: str, seed: int) -> "Blend":
        if y.size == 0 or y.min() == y.max():
            logger.warning("hybrid: the head's cutoffs have one class; averaging the parts' logits")
            return cls(fitted_on=f"{fitted_on} (one class: equal weights)")
        # C=1 on standardised-scale logits: three parameters, hundreds of positives; the light
        # penalty only keeps a collinear pair of parts from trading huge opposite weights
        lr = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(z, y, sample_weight=w)
        return cls(lr.coef_[0, 0], lr.coef_[0, 1], lr.intercept_[0], fitted_on)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return expit(z @ np.array([self.w_gnn, self.w_agg]) + self.b)

    def to_dict(self) -> dict:
        return {"w_gnn": self.w_gnn, "w_agg": self.w_agg, "b": self.b, "fitted_on": self.fitted_on}


@dataclass
class HybridRows:
    """What scoring a batch with the hybrid built (``HybridModel.rows``): its GNN part's
    encoded rows of the graph and its ``lgbm_agg`` part's table of the scored leads."""
    gnn: Encoded
    agg: TableRows


class HybridModel(LeadModel):
    """The GNN and ``lgbm_agg``, stacked by a logistic head fit on validation.

    Args:
        gnn: a GNN fitted on the same split (reused); None: ``fit`` trains one with ``gnn_options``.
        agg: an ``LGBMAggModel`` fitted on the same split (reused); None: ``fit`` trains one.
        gnn_options: the GNN's options when ``fit`` trains it. Default ``TrainOptions()``.
        lgbm_options, career: the ``lgbm_agg`` part's when ``fit`` trains it.
    """
    name = "hybrid"

    def __init__(self, gnn: Optional[GNNLeadModel] = None, agg: Optional[LGBMAggModel] = None,
                 gnn_options: Optional[TrainOptions] = None, lgbm_options: LGBMOptions = LGBMOptions(),
                 career: bool = True) -> None:
        self.gnn = gnn
        self.agg = agg if agg is not None else LGBMAggModel(lgbm_options, career=career)
        self.gnn_options = gnn_options
        self.blend = Blend()
        self.tier_cuts: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.tier_rates: dict = {}
        self.tier_card: dict = {}
        self.version: Optional[str] = None

    @property
    def parts(self) -> tuple[LeadModel, LeadModel]:
        return self._gnn(), self.agg

    def part_logits(self, graph: Subgraph, contact_ids: Sequence[str],
                    encoded: Optional[HybridRows] = None) -> np.ndarray:
        """``(n, 2)``: the GNN's and ``lgbm_agg``'s logits of each lead. ``encoded``: ``rows``
        of (at least) these leads when the caller has them (the stream scores and then explains
        the same union), so neither part's rows are built twice."""
        gnn, agg = self.parts
        if encoded is None:
            p_gnn = gnn.predict_proba(graph, contact_ids)
        else:
            data, seeds = to_hetero_data(graph, gnn.spec, contact_ids, encoded=encoded.gnn)
            p_gnn = gnn.proba_from_data(data, seeds)
        p_agg = agg.predict_proba(graph, contact_ids, rows=encoded.agg if encoded is not None else None)
        return np.column_stack([_logit(np.clip(p, _EPS, 1 - _EPS)) for p in (p_gnn, p_agg)])

    def rows(self, graph: Subgraph, contact_ids: Sequence[str]) -> HybridRows:
        """Both parts' rows: the GNN's encoded ``graph`` and ``lgbm_agg``'s table of the leads."""
        return HybridRows(encode_graph(graph, self._gnn().spec), self.agg.rows(graph, contact_ids))

    # ------------------------------------------------------------------ LeadModel
    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "HybridModel":
        if self.gnn is None or self.gnn.net is None:
            self.gnn = GNNLeadModel(self.gnn_options).fit(train, valid, seed=seed)
        if self.agg.encoder is None:
            self.agg.fit(train, valid, seed=seed)
        held = [ex for ex in valid or () if ex.contact_ids]
        fitted_on = "validation"
        if not held:
            logger.warning("hybrid: no validation cutoffs; fitting the head on the training ones "
                           "(where the parts are in sample: it will trust them too much)")
            held, fitted_on = [ex for ex in train if ex.contact_ids], "training"
        z, y, w = self._stack(held)
        self.blend = Blend.fit(z, y, w, fitted_on, seed)
        fitted = fit_tier_card(self.blend(z), y)
        if fitted is not None:
            self.tier_cuts, self.tier_rates, self.tier_card = fitted
        return self

    def _stack(self, examples: ExampleSet) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        zs, ys, ws = [], [], []
        for ex in examples:
            zs.append(self.part_logits(ex.graph(), ex.contact_ids))
            ys.append(np.asarray(ex.labels, dtype=np.float64))
            ws.append(ex.example_weights())
        if not zs:
            return np.zeros((0, 2)), np.zeros(0), None
        z, y, w = np.vstack(zs), np.concatenate(ys), np.concatenate(ws)
        keep = ~np.isnan(y)
        return z[keep], y[keep], (None if np.all(w[keep] == 1.0) else w[keep])

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str],
                      encoded: Optional[HybridRows] = None) -> np.ndarray:
        """Probabilities as of ``graph.as_of``; ``encoded`` as for ``part_logits``."""
        if not len(contact_ids):
            return np.zeros(0)
        return self.blend(self.part_logits(graph, contact_ids, encoded))

    def tiers(self, proba: np.ndarray) -> list[str]:
        """Tier letter per probability (cut points and rates fit on validation, as the GNN's)."""
        return assign_tiers(proba, self.tier_cuts)

    def explain_signed(self, graph: Subgraph, contact_ids: Sequence[str], top_k: int = 5,
                       min_abs: float = 1e-4, encoded: Optional[HybridRows] = None) -> list[Explanation]:
        """Each lead's factors, in the groups and words both parts share (``model.factors``).

        Each part explains itself (the GNN by occlusion, ``lgbm_agg`` by TreeSHAP), each factor
        in that part's probability points; a group's points become the part's logit without it
        (``logit(p) - logit(p - d)``), weighted by the head (``w * dz``), summed over the parts,
        and brought back to the hybrid's probability as ``p - sigmoid(z - sum)``. The text is
        that of the part whose own contribution has the sign of the sum (the larger one when
        both do), so the words still agree with the sign (a text is chosen by its own part's sign).
        ``encoded``: both parts' rows (``rows``), reused when given.
        """
        from leadpulse.model.explain import explain_signed  # the GNN's occlusion; lazily, as it is heavy
        ids = list(contact_ids)
        if not ids:
            return []
        z = self.part_logits(graph, ids, encoded)
        weights = (self.blend.w_gnn, self.blend.w_agg)
        parts = (explain_signed(self._gnn(), graph, ids, top_k=_ALL, min_abs=0.0,
                                encoded=encoded.gnn if encoded is not None else None),
                 self.agg.explain_signed(graph, ids, top_k=_ALL, min_abs=0.0,
                                         encoded=encoded.agg if encoded is not None else None))
        out = []
        for i in range(len(ids)):
            groups: dict[str, list[tuple[float, Factor]]] = {}
            for part, w, zi in zip(parts, weights, z[i]):
                p = float(expit(zi))
                for f in part[i].top:
                    without = float(np.clip(p - f.contribution, _EPS, 1 - _EPS))
                    groups.setdefault(f.group, []).append((w * (zi - float(_logit(without))), f))
            zh = float(z[i] @ np.array(weights) + self.blend.b)
            factors = []
            for group, terms in groups.items():
                total = sum(dz for dz, _ in terms)
                agree = [f for dz, f in sorted(terms, key=lambda t: -abs(t[0])) if f.contribution * total > 0]
                if agree and total:
                    factors.append(Factor(agree[0].factor, group, float(expit(zh) - expit(zh - total))))
            out.append(sign_split(factors, top_k, min_abs))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._gnn().save(path / _GNN_DIR)
        self.agg.save(path / _AGG_DIR)
        (path / "model.json").write_text(json.dumps({
            "format_version": FORMAT_VERSION, "name": self.name, "blend": self.blend.to_dict(),
            "tier_cuts": list(self.tier_cuts), "tier_rates": self.tier_rates, "tier_card": self.tier_card},
            indent=1))

    @classmethod
    def load(cls, path: Path) -> "HybridModel":
        path = Path(path)
        state = json.loads((path / "model.json").read_text())
        if state.get("name") != cls.name or state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} holds {state.get('name')!r} v{state.get('format_version')}, "
                             f"not {cls.name!r} v{FORMAT_VERSION}")
        agg = LGBMAggModel.load(path / _AGG_DIR)
        model = cls(gnn=GNNLeadModel.load(path / _GNN_DIR), agg=agg)
        model.blend = Blend(**state["blend"])
        model.tier_cuts = tuple(state["tier_cuts"])
        model.tier_rates = state.get("tier_rates") or {}
        model.tier_card = state.get("tier_card") or {}
        return model

    def _gnn(self) -> GNNLeadModel:
        if self.gnn is None or self.gnn.net is None:
            raise RuntimeError("hybrid: its GNN is not fitted")
        return self.gnn
