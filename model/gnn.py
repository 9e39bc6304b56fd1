"""The heterogeneous GNN lead model: HeteroConv over SAGEConv per edge type, two layers.

Architecture (``HeteroSAGE``):

* a per-node-type input map to ``hidden``: linear (the original) or, with ``encoder="mlp"``
  (``TrainOptions`` default), two relu layers, so first-round sums can count neighbours with
  a property instead of adding raw features up;
* ``layers`` rounds of message passing. Each round, per destination node type ``t``:
  ``h_t' = relu(root_t(h_t) + sum_e [SAGEConv_e(h_src(e), h_t) + D_e log1p(deg_e)])`` over
  the edge types ``e`` into ``t`` (base and ``rev_`` types; the reverse types are what gives
  contacts an embedding at all). Each SAGEConv concatenates several aggregations
  (``TrainOptions`` default mean, max and logsum = sign(s) log1p|s| of the sum: "3 colleagues
  engaged" is a count, the champion is a max, and a contact's 500 activities must not drown
  the other terms); the degree
  term (optional, default on) is a learned vector per edge type. The per-edge-type SAGEConvs
  and degree terms carry neither root weight nor bias; the
  root term and the one bias live in ``root_t``. That is the same function class as PyG's
  default SAGEConv-per-edge-type sum (a sum of per-type root linears is one linear), with one
  difference that matters: an edge type with no edges in a batch contributes exactly 0, so
  dropping it (BROKER_NOTES trap 8: edge types whose source type has no nodes) changes
  nothing and a lead scores the same in a 2-hop subgraph as in the full snapshot.
* the last round only updates contacts; a two-layer MLP head maps the contact embedding
  (with ``skip``, concatenated with the relu of the contact's input projection) to one logit.

``GNNLeadModel`` wraps the module with its ``FeatureSpec``, Platt calibration and tier cut
points, and implements ``LeadModel`` (training lives in ``model.train``).
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from scipy.special import expit
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv
from torch_geometric.nn.aggr import Aggregation

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.features import FeatureSpec, khop_subgraph, seed_index, to_hetero_data
from leadpulse.schemas.types import CONTACT, EDGE_TYPES, NODE_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from leadpulse.model.train import TrainOptions

logger = logging.getLogger(__name__)

__all__ = ["HeteroSAGE", "EnsembleSAGE", "build_net", "GNNLeadModel", "Calibration", "TIERS",
           "edge_index_dict"]

TIERS = ("A", "B", "C", "D")
#: architecture options of models saved before they existed (mean aggregation, no extras)
_LEGACY_ARCH = {"aggr": "mean", "degree": False, "skip": False, "norm": "none", "exclude_types": "",
                "encoder": "linear", "ema": 0.0}
_WEIGHTS, _SPEC, _META = "weights.pt", "feature_spec.json", "model.json"
#: leads per forward when ``predict_proba`` splits a graph above ``max_full_nodes``
PREDICT_CHUNK = 10_000


class LogSumAggregation(Aggregation):
    """``sign(s) log1p(|s|)`` of the neighbour sum ``s``: a count that stays informative from 1
    to 1,000 neighbours (an account's activities) without dominating the other terms. Empty
    neighbourhood -> 0, like every other aggregation here."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2, **kwargs):
        s = self.reduce(x, index, ptr, dim_size, dim, reduce="sum")
        return torch.sign(s) * torch.log1p(s.abs())


def _aggregation(name: str):
    return LogSumAggregation() if name == "logsum" else name


def _encoder(in_dim: int, hidden: int, kind: str) -> nn.Module:
    """Per-node input map. "linear" (the original) makes every first-round message a linear
    function of the neighbour's features, so a sum over colleagues can only add features up;
    "mlp" (two layers, relu) lets it count neighbours *with* a property (active colleagues,
    recent high-intent activities), which is what the account aggregates of lgbm_agg are."""
    if kind == "linear":
        return nn.Linear(in_dim, hidden)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
    raise ValueError(f"unknown encoder {kind!r} (linear or mlp)")


class HeteroSAGE(nn.Module):
    """Hetero GraphSAGE producing one logit per seed contact.

    Args:
        in_dims: input width per node type (``FeatureSpec.dims()``).
        hidden: embedding width. Default 64.
        layers: message-passing rounds (= hops of the receptive field). Default 2.
        dropout: dropout on hidden embeddings during training. Default 0.1.
        aggr: SAGEConv aggregation(s), comma-separated. Default "mean" (the original recipe;
            ``TrainOptions`` defaults to "mean,max,logsum"; "logsum" is ``LogSumAggregation``).
        degree: add ``D_e log1p(in-degree)`` per edge type. Default False.
        skip: head input = [embedding, relu(input projection)]. Default False.
        norm: "none" or "layer" (per-node LayerNorm, batch-independent). Default "none".
        exclude: node types left out of message passing. Default none.
        encoder: input map per node type, "linear" or "mlp". Default "linear".
    """

    def __init__(self, in_dims: dict[str, int], hidden: int = 64, layers: int = 2, dropout: float = 0.1,
                 aggr: str = "mean", degree: bool = False, skip: bool = False, norm: str = "none",
                 exclude: Sequence[str] = (), encoder: str = "linear"):
        super().__init__()
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        self.skip, self.degree = skip, degree
        self.exclude = tuple(exclude)
        aggrs = [a.strip() for a in aggr.split(",") if a.strip()]
        aggrs = [_aggregation(a) for a in aggrs]
        sage_aggr = aggrs[0] if len(aggrs) == 1 else aggrs
        self.inp = nn.ModuleDict({t: _encoder(in_dims[t], hidden, encoder) for t in NODE_TYPES})
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.degs = nn.ModuleList()
        for layer in range(layers):
            last = layer == layers - 1
            etypes = [e for e in EDGE_TYPES if (not last or e[2] == CONTACT)
                      and e[0] not in self.exclude and e[2] not in self.exclude]
            with warnings.catch_warnings():  # the last round updates contacts only, on purpose
                warnings.filterwarnings("ignore", message="There exist node types")
                self.convs.append(HeteroConv(
                    {e: SAGEConv(hidden, hidden, aggr=sage_aggr, root_weight=False, bias=False)
                     for e in etypes},
                    aggr="sum"))
            ntypes = [CONTACT] if last else [t for t in NODE_TYPES if t not in self.exclude]
            self.roots.append(nn.ModuleDict({t: nn.Linear(hidden, hidden) for t in ntypes}))
            if degree:  # log1p(in-degree) per edge type, no bias: 0 edges -> exactly 0
                self.degs.append(nn.ModuleDict({"__".join(e): nn.Linear(1, hidden, bias=False)
                                                for e in etypes}))
            if norm == "layer":  # per-node LayerNorm: batch-independent in train and eval
                self.norms.append(nn.ModuleDict({t: nn.LayerNorm(hidden) for t in ntypes}))
            elif norm != "none":
                raise ValueError(f"unknown norm {norm!r} (none or layer)")
        head_in = 2 * hidden if skip else hidden
        self.head = nn.Sequential(nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict) -> torch.Tensor:
        """Contact embeddings after all rounds (rows = local contact indices); with ``skip``,
        concatenated with the contact's input projection."""
        h = {t: self.inp[t](x) for t, x in x_dict.items() if t not in self.exclude}
        h0 = h[CONTACT]
        for layer, (conv, roots) in enumerate(zip(self.convs, self.roots)):
            msgs = conv(h, edge_index_dict)
            if self.degree:
                for e, lin in self.degs[layer].items():
                    etype = tuple(e.split("__"))
                    ei = edge_index_dict.get(etype)
                    if ei is None or etype[2] not in roots:
                        continue
                    n = h[etype[2]].shape[0]
                    deg = torch.zeros(n, dtype=h0.dtype).index_add_(
                        0, ei[1], torch.ones(ei.shape[1], dtype=h0.dtype))
                    term = lin(torch.log1p(deg).unsqueeze(-1))
                    msgs[etype[2]] = msgs[etype[2]] + term if etype[2] in msgs else term
            new = {}
            for t, root in roots.items():
                out = root(h[t])
                if t in msgs:
                    out = out + msgs[t]
                if len(self.norms):
                    out = self.norms[layer][t](out)
                out = torch.relu(out)
                new[t] = nn.functional.dropout(out, self.dropout, self.training)
            h = new
        if self.skip:
            return torch.cat([h[CONTACT], torch.relu(h0)], dim=-1)
        return h[CONTACT]

    def forward(self, x_dict, edge_index_dict, seed_idx: torch.Tensor) -> torch.Tensor:
        # the head runs on every contact, then the seeds are picked: a float32 matmul over the
        # seed rows alone can round a row differently depending on where it sits in the block,
        # so a lead's score would depend (~1e-8) on the order leads were requested in
        return self.head(self.embed(x_dict, edge_index_dict)).squeeze(-1)[seed_idx]

    @classmethod
    def from_options(cls, in_dims: dict[str, int], o: "TrainOptions") -> "HeteroSAGE":
        return cls(in_dims, o.hidden, o.layers, o.dropout, aggr=o.aggr, degree=o.degree,
                   skip=o.skip, norm=o.norm, encoder=getattr(o, "encoder", "linear"),
                   exclude=tuple(t.strip() for t in o.exclude_types.split(",") if t.strip()))


class EnsembleSAGE(nn.Module):
    """Several ``HeteroSAGE`` networks (different seeds) whose logits are averaged: the same
    inputs and receptive field, less variance than one early-stopped network."""

    def __init__(self, members: Sequence[HeteroSAGE]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x_dict, edge_index_dict, seed_idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x_dict, edge_index_dict, seed_idx) for m in self.members]).mean(0)


def build_net(in_dims: dict[str, int], o: "TrainOptions") -> nn.Module:
    """The network ``o`` describes: one ``HeteroSAGE``, or an ``EnsembleSAGE`` of ``o.ensemble``."""
    k = getattr(o, "ensemble", 1)
    if k > 1:
        return EnsembleSAGE([HeteroSAGE.from_options(in_dims, o) for _ in range(k)])
    return HeteroSAGE.from_options(in_dims, o)


def edge_index_dict(data: HeteroData) -> dict:
    """Edge types with at least one edge and a non-empty source type (trap 8). Dropping an
    empty type is exact for ``HeteroSAGE`` (see module doc)."""
    out = {}
    for etype in data.edge_types:
        ei = data[etype].edge_index
        if ei.numel() and data[etype[0]].num_nodes:
            out[etype] = ei
    return out


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


class GNNLeadModel(LeadModel):
    """The GNN behind ``LeadModel``: fit, predict_proba, save/load.

    Attributes (after fit or load):
        spec: the ``FeatureSpec`` fit on the training graphs.
        net: the ``HeteroSAGE`` module (eval mode).
        calibration: Platt constants fit on the validation set.
        tier_cuts: calibrated-probability thresholds (A, B, C): score >= cut -> tier. Chosen as
            the 95th, 80th and 50th percentiles of the calibrated validation scores (A = top 5 %,
            B = next 15 %, C = next 30 %, D = the rest, at validation time).
        history: per-epoch training loss and validation AP.
        version: set by the registry (None until registered).
    """

    name = "gnn"

    def __init__(self, options: Optional["TrainOptions"] = None):
        from leadpulse.model.train import TrainOptions
        self.options = options or TrainOptions()
        self.spec: Optional[FeatureSpec] = None
        self.net: Optional[HeteroSAGE] = None
        self.calibration = Calibration()
        self.tier_cuts: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.tier_rates: dict[str, float] = {}
        self.history: list[dict] = []
        self.version: Optional[str] = None

    # ------------------------------------------------------------------ LeadModel
    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "GNNLeadModel":
        from leadpulse.model.train import fit_gnn
        return fit_gnn(self, train, valid, seed=seed)

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        if not len(contact_ids):
            return np.zeros(0)
        n_nodes = sum(len(v) for v in graph.node_ids.values())
        if n_nodes > self.options.max_full_nodes and len(contact_ids) > PREDICT_CHUNK:
            # a big snapshot: score chunks of leads on their exact k-hop subgraphs, which give
            # the same logits (module doc) at a fraction of the memory of one full forward
            local = seed_index(graph, contact_ids)
            logits = []
            for lo in range(0, len(local), PREDICT_CHUNK):
                sub = khop_subgraph(graph, local[lo:lo + PREDICT_CHUNK], hops=self.options.layers)
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
        a, b, c = self.tier_cuts
        p = np.asarray(proba)
        idx = np.where(p >= a, 0, np.where(p >= b, 1, np.where(p >= c, 2, 3)))
        return [TIERS[i] for i in idx]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self._net().state_dict(), path / _WEIGHTS)
        (path / _SPEC).write_text(self._spec().to_json())
        meta = {
            "name": self.name, "options": asdict(self.options), "in_dims": self._spec().dims(),
            "calibration": self.calibration.to_dict(), "tier_cuts": list(self.tier_cuts),
            "tier_rates": self.tier_rates, "history": self.history, "version": self.version,
        }
        (path / _META).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "GNNLeadModel":
        from leadpulse.model.train import TrainOptions
        path = Path(path)
        meta = json.loads((path / _META).read_text())
        # models saved before the architecture options existed: the original architecture
        model = cls(TrainOptions(**{**_LEGACY_ARCH, **meta["options"]}))
        model.spec = FeatureSpec.from_json((path / _SPEC).read_text())
        model.net = build_net(model.spec.dims(), model.options)
        model.net.load_state_dict(torch.load(path / _WEIGHTS, weights_only=True))
        model.net.eval()
        cal = meta["calibration"]
        model.calibration = Calibration(cal["a"], cal["b"])
        model.tier_cuts = tuple(meta["tier_cuts"])
        model.tier_rates = meta.get("tier_rates", {})
        model.history = meta.get("history", [])
        model.version = meta.get("version")
        return model

    # ------------------------------------------------------------------ helpers
    def _spec(self) -> FeatureSpec:
        if self.spec is None:
            raise RuntimeError("model is not fitted")
        return self.spec

    def _net(self) -> HeteroSAGE:
        if self.net is None:
            raise RuntimeError("model is not fitted")
        return self.net

    def eval_net(self) -> HeteroSAGE:
        """The network in eval mode. ``Module.eval()`` walks every submodule through
        ``__setattr__`` (~2.7 ms here), so it is called only when the mode is wrong."""
        net = self._net()
        if net.training:
            net.eval()
        return net
