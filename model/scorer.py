"""Scoring: a batch of leads' k-hop union as of t in, probabilities, tiers and factors out.

Pure: no I/O, no clock, no global state. The stream gathers ``graph_store.subgraph(seeds,
as_of, hops=2)`` for a micro-batch and calls ``Scorer.score``; the result equals scoring the
same contacts on the full snapshot (``model.predict_proba(snapshot, ids)``) within 1e-5. For
the GNN because features depend only on each node and ``as_of`` and the model's empty edge
types contribute nothing (``model.gnn``); for the baselines (the rules model, logistic
regression, ``lgbm_flat``, ``lgbm_agg``) because their features read only a lead's 2-hop
neighbourhood: its own fields, timeline, orders and career, its company, the company's other
contacts, opportunities and peer companies, each with the per-node data the union carries
(``model.tabular``; tests/model/test_scorer.py checks it on the graph store).

Threads: torch's intra-op pool defaults to one thread per core. A micro-batch of 1,000 leads
is small enough that 1-2 threads are best; a stream worker that runs several processes per
machine should pass ``num_threads=1`` so workers don't oversubscribe the cores. The setting is
process-wide (``torch.set_num_threads``), so it is applied only when asked.

Example:
    >>> ScoreBatch(as_of=0, model_version="v1", contact_ids=["c"], scores=np.array([0.5]),
    ...            tiers=["A"]).records()[0]["tier"]
    'A'
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.baselines import _Tabular
from leadpulse.model.explain import Factor, explain
from leadpulse.model.features import Encoded, encode_graph, to_hetero_data
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.hybrid import HybridModel, HybridRows
from leadpulse.model.rules import RulesModel
from leadpulse.model.tabular import TableRows

logger = logging.getLogger(__name__)

__all__ = ["Scorer", "ScoreBatch", "score"]


@dataclass
class ScoreBatch:
    """Scores of one batch, aligned with ``contact_ids``.

    Attributes:
        as_of: the event time the scores reflect (micros).
        model_version: version of the model that produced them (None if unregistered).
        contact_ids, scores (calibrated probabilities), tiers ("A".."D").
        factors: per contact, top factors (only when asked for).
        encoded: the rows this scoring built, for ``explain(..., encoded=)`` of some of these
            leads afterwards without building them again: the GNN's encoded graph, a tabular
            baseline's feature table (``model.tabular.TableRows``), both for the hybrid
            (``model.hybrid.HybridRows``); None for the rules model.
    """
    as_of: int
    model_version: Optional[str]
    contact_ids: list[str]
    scores: np.ndarray
    tiers: list[str]
    factors: Optional[list[list[Factor]]] = None
    encoded: Union[Encoded, TableRows, HybridRows, None] = field(default=None, repr=False)

    def records(self) -> list[dict]:
        """One plain dict per contact (contact_id, score, tier, top_factors)."""
        out = []
        for i, cid in enumerate(self.contact_ids):
            out.append({"contact_id": cid, "score": float(self.scores[i]), "tier": self.tiers[i],
                        "top_factors": [f.to_dict() for f in self.factors[i]] if self.factors else []})
        return out


class Scorer:
    """Scores leads with one model.

    Args:
        model: a fitted (or loaded) ``GNNLeadModel``; a tabular baseline (``LGBMAggModel``,
            ``LGBMFlatModel``, ``LogRegModel``: any ``model.baselines._Tabular``, scored by its
            ``predict_proba`` and ``tiers``, explained by its per-column contributions); or the
            ``RulesModel`` (what serves below the minimum data, docs/model.md#minimum-data;
            explained by its points); or the ``HybridModel`` (the GNN and ``lgbm_agg`` stacked,
            explained by both parts' factors). docs/model.md#serving-any-family.
        num_threads: if set, ``torch.set_num_threads(num_threads)`` (process-wide). Default None.
    """

    def __init__(self, model: GNNLeadModel | RulesModel | _Tabular | HybridModel, num_threads: Optional[int] = None):
        if isinstance(model, GNNLeadModel) and (model.spec is None or model.net is None):
            raise ValueError("model is not fitted")
        if isinstance(model, _Tabular) and model.encoder is None:
            raise ValueError("model is not fitted")
        if isinstance(model, HybridModel) and (model.gnn is None or model.agg.encoder is None):
            raise ValueError("model is not fitted")
        if not isinstance(model, (GNNLeadModel, RulesModel, _Tabular, HybridModel)):
            raise ValueError(f"cannot serve a {type(model).__name__}: only the GNN, the hybrid, the rules model "
                             f"and the tabular baselines (lgbm_agg, lgbm_flat, logreg)")
        self.model = model
        if num_threads:
            torch.set_num_threads(num_threads)

    @property
    def version(self) -> Optional[str]:
        return self.model.version

    @property
    def activity_days(self) -> Optional[float]:
        """The activity window of the model's graphs: a caller reads the union with
        ``store.subgraph(..., activity_days=)`` and the store leaves out the activities scoring
        would not read. The GNN's (and the hybrid's) is its feature spec's (``FeatureSpec.window``;
        None: every activity node); the other families read contacts' timelines, never an
        activity node, so theirs is 0: none."""
        model = self.model
        gnn = model if isinstance(model, GNNLeadModel) else model.gnn if isinstance(model, HybridModel) else None
        return gnn.spec.activity_days if gnn is not None and gnn.spec is not None else 0.0

    def score(self, graph: Subgraph, contact_ids: Optional[Sequence[str]] = None,
              top_k: int = 0) -> ScoreBatch:
        """Score ``contact_ids`` (default: the graph's seeds) as of ``graph.as_of``.

        Args:
            graph: the exact k-hop union of the contacts (or a snapshot) as of t.
            contact_ids: contacts to score; each must be in ``graph``. Default ``graph.seeds``.
            top_k: if > 0, also explain each contact with its ``top_k`` factors (for the GNN
                one batched forward per contact; ask only for leads you will publish). Default 0.
        """
        if contact_ids is None:
            contact_ids = [graph.node_ids["contact"][i] for i in graph.seeds]
        ids = list(contact_ids)
        if not ids:
            return ScoreBatch(graph.as_of, self.version, [], np.zeros(0), [], [] if top_k else None)
        proba, encoded = self._proba(graph, ids)
        factors = explain(self.model, graph, ids, top_k=top_k, encoded=encoded) if top_k > 0 else None
        return ScoreBatch(graph.as_of, self.version, ids, proba, self.model.tiers(proba), factors, encoded)

    def _proba(self, graph: Subgraph, ids: list[str]) -> tuple[np.ndarray, Union[Encoded, TableRows, HybridRows, None]]:
        """The leads' probabilities and the rows the family built for them (kept for the
        explanations: ``ScoreBatch.encoded``)."""
        model = self.model
        if isinstance(model, GNNLeadModel):
            encoded = encode_graph(graph, model.spec)
            data, seeds = to_hetero_data(graph, model.spec, ids, encoded=encoded)
            return model.proba_from_data(data, seeds), encoded
        if isinstance(model, HybridModel):
            encoded = model.rows(graph, ids)
            return model.predict_proba(graph, ids, encoded), encoded
        if isinstance(model, RulesModel):
            return model.predict_proba(graph, ids), None
        rows = model.rows(graph, ids) if model.constant is None else None  # a constant reads nothing
        return model.predict_proba(graph, ids, rows=rows), rows


def score(model: GNNLeadModel | RulesModel | _Tabular | HybridModel, graph: Subgraph, contact_ids: Optional[Sequence[str]] = None,
          top_k: int = 0) -> ScoreBatch:
    """Functional form of ``Scorer(model).score(graph, contact_ids, top_k)``."""
    return Scorer(model).score(graph, contact_ids, top_k)
