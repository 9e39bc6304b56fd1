"""The GNN lead model: the network with its ``FeatureSpec``, Platt calibration and tier cut
points, behind ``LeadModel`` (fit, predict_proba, save/load).

The pieces live below this module and never import it: ``model.gnn_options`` (the options),
``model.gnn_net`` (the network), ``model.calibration`` (probabilities and tiers),
``model.gnn_fit`` (the training loop) and ``model.gnn_format`` (model.json versions).
``model.train`` is the entry point callers train with; it imports this module, not the reverse.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import HeteroData

from leadpulse.graph_store.base import Subgraph
from leadpulse.model import gnn_fit
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.calibration import TIERS, Calibration, assign_tiers
from leadpulse.model.features import FeatureSpec, khop_subgraph, seed_index, to_hetero_data
from leadpulse.model.gnn_format import FORMAT_VERSION, upgrade
from leadpulse.model.gnn_net import EnsembleSAGE, HeteroSAGE, build_net, edge_index_dict
from leadpulse.model.gnn_options import TrainOptions

# the network and calibration names stay importable from here, where callers have found them
__all__ = ["GNNLeadModel", "PREDICT_CHUNK", "HeteroSAGE", "EnsembleSAGE", "build_net", "Calibration",
           "TIERS", "edge_index_dict"]

_WEIGHTS, _SPEC, _META = "weights.pt", "feature_spec.json", "model.json"
#: leads per forward when ``predict_proba`` splits a graph above ``max_full_nodes``
PREDICT_CHUNK = 10_000


class GNNLeadModel(LeadModel):
    """The GNN behind ``LeadModel``: fit, predict_proba, save/load.

    Attributes (after fit or load):
        spec: the ``FeatureSpec`` fit on the training graphs.
        net: the ``HeteroSAGE`` module, or an ``EnsembleSAGE`` of them (eval mode).
        calibration: Platt constants fit on the validation set.
        tier_cuts: calibrated-probability thresholds (A, B, C): score >= cut -> tier. Chosen as
            the 90th, 70th and 40th percentiles of the calibrated validation scores (A = top 10 %,
            B = next 20 %, C = next 30 %, D = the rest, at validation time; ``calibration``).
        tier_card: each tier's cut, share, conversion rate and lift on the validation leads
            (``calibration.tier_card``; empty for a model saved before cards existed).
        history: per-epoch training loss and validation AP.
        version: set by the registry (None until registered).
    """

    name = "gnn"

    def __init__(self, options: Optional[TrainOptions] = None):
        self.options = options if options is not None else TrainOptions()
        self.spec: Optional[FeatureSpec] = None
        self.net: Optional[nn.Module] = None
        self.calibration = Calibration()
        self.tier_cuts: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.tier_rates: dict[str, float] = {}
        self.tier_card: dict = {}
        self.history: list[dict] = []
        self.version: Optional[str] = None

    # ------------------------------------------------------------------ LeadModel
    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "GNNLeadModel":
        """Train in place with ``options`` and ``seed`` (which replaces ``options.seed``)."""
        self.options = replace(self.options, seed=seed)
        fitted = gnn_fit.fit(self.options, train, valid)
        self.spec, self.net, self.calibration = fitted.spec, fitted.net, fitted.calibration
        if fitted.tiers is not None:
            self.tier_cuts, self.tier_rates = fitted.tiers
            self.tier_card = fitted.tier_card or {}
        self.history = fitted.history
        return self

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        if not len(contact_ids):
            return np.zeros(0)
        n_nodes = sum(len(v) for v in graph.node_ids.values())
        if n_nodes > self.options.sampling.max_full_nodes and len(contact_ids) > PREDICT_CHUNK:
            # a big snapshot: score chunks of leads on their exact k-hop subgraphs, which give
            # the same logits (module doc) at a fraction of the memory of one full forward
            local = seed_index(graph, contact_ids)
            logits = []
            for lo in range(0, len(local), PREDICT_CHUNK):
                sub = khop_subgraph(graph, local[lo:lo + PREDICT_CHUNK], hops=self.options.arch.layers)
                data, seeds = to_hetero_data(sub, self._spec())
                logits.append(self.logits(data, seeds))
            return self.calibration(np.concatenate(logits))
        data, seeds = to_hetero_data(graph, self._spec(), contact_ids)
        return self.calibration(self.logits(data, seeds))

    # ------------------------------------------------------------------ tensors in
    def logits(self, data: HeteroData, seed_idx: np.ndarray) -> np.ndarray:
        """Raw logits of ``seed_idx`` contacts of an encoded graph (eval mode, no grad)."""
        net = self.eval_net()
        with torch.inference_mode():
            out = net(data.x_dict, edge_index_dict(data), torch.as_tensor(seed_idx, dtype=torch.long))
        return out.double().numpy()

    def proba_from_data(self, data: HeteroData, seed_idx: np.ndarray) -> np.ndarray:
        return self.calibration(self.logits(data, seed_idx))

    def tiers(self, proba: np.ndarray) -> list[str]:
        """Tier letter per calibrated probability (``tier_cuts``)."""
        return assign_tiers(proba, self.tier_cuts)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self._net().state_dict(), path / _WEIGHTS)
        (path / _SPEC).write_text(self._spec().to_json())
        meta = {
            "format_version": FORMAT_VERSION, "name": self.name, "options": self.options.to_dict(),
            "in_dims": self._spec().dims(),
            "calibration": self.calibration.to_dict(), "tier_cuts": list(self.tier_cuts),
            "tier_rates": self.tier_rates, "tier_card": self.tier_card, "history": self.history, "version": self.version,
        }
        (path / _META).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "GNNLeadModel":
        path = Path(path)
        meta = upgrade(json.loads((path / _META).read_text()))
        model = cls(TrainOptions.from_dict(meta["options"]))
        model.spec = FeatureSpec.from_json((path / _SPEC).read_text())
        model.net = build_net(model.spec.dims(), model.options.arch)
        model.net.load_state_dict(torch.load(path / _WEIGHTS, weights_only=True))
        model.net.eval()
        cal = meta["calibration"]
        model.calibration = Calibration(cal["a"], cal["b"])
        model.tier_cuts = tuple(meta["tier_cuts"])
        model.tier_rates = meta["tier_rates"]
        model.tier_card = meta.get("tier_card") or {}
        model.history = meta["history"]
        model.version = meta["version"]
        return model

    # ------------------------------------------------------------------ helpers
    def _spec(self) -> FeatureSpec:
        if self.spec is None:
            raise RuntimeError("model is not fitted")
        return self.spec

    def _net(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError("model is not fitted")
        return self.net

    def eval_net(self) -> nn.Module:
        """The network in eval mode. ``Module.eval()`` walks every submodule through
        ``__setattr__`` (~2.7 ms here), so it is called only when the mode is wrong."""
        net = self._net()
        if net.training:
            net.eval()
        return net
