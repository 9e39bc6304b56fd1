"""The contract every lead model passes (GNN and baselines alike).

Examples are grouped by cutoff time: for cutoff t, features come from the graph as of t and
labels from (t, t + window] (``model.task``). Models see the graph through ``graph()``, which
builds it on demand so a long run never holds every snapshot at once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from leadpulse.graph_store.base import Subgraph


@dataclass
class CutoffExamples:
    """Labelled (or unlabelled) contacts at one cutoff.

    Attributes:
        as_of: the cutoff (micros); features may use only events with time <= as_of.
        contact_ids: ids of the contacts to predict.
        labels: float array aligned with ``contact_ids`` (NaN when unknown, e.g. live scoring).
        build_graph: returns a Subgraph as of ``as_of`` containing every contact in
            ``contact_ids`` and its full receptive field (a snapshot, or an exact k-hop union).
        weights: optional importance weight per example (None = all 1). A training cutoff
            whose negatives were subsampled with probability p carries 1/p on them, so
            weighted statistics (base rate, loss) are those of the full cutoff.
    """
    as_of: int
    contact_ids: list[str]
    labels: np.ndarray
    build_graph: Callable[[], Subgraph] = field(repr=False)
    weights: Optional[np.ndarray] = None

    def example_weights(self) -> np.ndarray:
        """``weights`` as float64, or ones when there are none."""
        if self.weights is None:
            return np.ones(len(self.contact_ids))
        return np.asarray(self.weights, dtype=np.float64)

    def graph(self) -> Subgraph:
        return self.build_graph()


ExampleSet = Sequence[CutoffExamples]


class LeadModel(ABC):
    """A model that turns graph context into conversion probabilities."""

    #: short stable name used in reports and the registry ("gnn", "rules", "logreg", ...)
    name: str = ""
    #: whether ``fit`` learns the ranking from the examples (held to the registry's minimum data,
    #: docs/model.md#minimum-data); the rules baseline only calibrates a fixed ranking
    learned: bool = True

    @abstractmethod
    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "LeadModel":
        """Train on ``train`` (``valid`` for early stopping/calibration only). Deterministic by seed."""

    @abstractmethod
    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        """Probabilities (0..1) for ``contact_ids`` as of ``graph.as_of``."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write everything needed to reproduce predictions into directory ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> "LeadModel":
        """Inverse of ``save``: identical predictions after a round trip."""
