"""The network of the GNN lead model: HeteroConv over SAGEConv per edge type.

``HeteroSAGE`` (built from ``ArchOptions``):

* a per-node-type input map to ``hidden``: linear (the original) or, with ``Encoder.MLP`` (the
  default), two relu layers, so first-round sums can count neighbours with a property instead
  of adding raw features up;
* ``layers`` rounds of message passing. Each round, per destination node type ``t``:
  ``h_t' = relu(root_t(h_t) + sum_e [SAGEConv_e(h_src(e), h_t) + D_e log1p(deg_e)])`` over
  the edge types ``e`` into ``t`` (base and ``rev_`` types; the reverse types are what gives
  contacts an embedding at all). Each SAGEConv concatenates several aggregations (default
  mean, max and logsum = sign(s) log1p|s| of the sum: "3 colleagues engaged" is a count, the
  champion is a max, and a contact's 500 activities must not drown the other terms); the
  degree term (optional, default on) is a learned vector per edge type. The per-edge-type
  SAGEConvs and degree terms carry neither root weight nor bias; the root term and the one
  bias live in ``root_t``. That is the same function class as PyG's default
  SAGEConv-per-edge-type sum (a sum of per-type root linears is one linear), with one
  difference that matters: an edge type with no edges in a batch contributes exactly 0, so
  dropping it (docs/kafka-notes.md#trap-8: edge types whose source type has no nodes) changes
  nothing and a lead scores the same in a 2-hop subgraph as in the full snapshot.
* the last round only updates contacts; a two-layer MLP head maps the contact embedding
  (with ``skip``, concatenated with the relu of the contact's input projection) to one logit.
"""
from __future__ import annotations

import warnings
from typing import Sequence, Union

import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv
from torch_geometric.nn.aggr import Aggregation

from leadpulse.model.gnn_options import Aggr, ArchOptions, Encoder, Norm
from leadpulse.schemas.types import CONTACT, EDGE_TYPES, NODE_TYPES

__all__ = ["HeteroSAGE", "EnsembleSAGE", "LogSumAggregation", "build_net", "edge_index_dict"]


class LogSumAggregation(Aggregation):
    """``sign(s) log1p(|s|)`` of the neighbour sum ``s``: a count that stays informative from 1
    to 1,000 neighbours (an account's activities) without dominating the other terms. Empty
    neighbourhood -> 0, like every other aggregation here."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2, **kwargs):
        s = self.reduce(x, index, ptr, dim_size, dim, reduce="sum")
        return torch.sign(s) * torch.log1p(s.abs())


def _aggregation(aggr: Aggr) -> Union[str, Aggregation]:
    return LogSumAggregation() if aggr is Aggr.LOGSUM else aggr.value  # PyG resolves the rest by name


def _encoder(in_dim: int, hidden: int, kind: Encoder) -> nn.Module:
    """Per-node input map. "linear" (the original) makes every first-round message a linear
    function of the neighbour's features, so a sum over colleagues can only add features up;
    "mlp" (two layers, relu) lets it count neighbours *with* a property (active colleagues,
    recent high-intent activities), which is what the account aggregates of lgbm_agg are."""
    if kind is Encoder.LINEAR:
        return nn.Linear(in_dim, hidden)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


class HeteroSAGE(nn.Module):
    """Hetero GraphSAGE producing one logit per seed contact.

    Args:
        in_dims: input width per node type (``FeatureSpec.dims()``).
        arch: the architecture (``ArchOptions``; its ``ensemble`` is ``build_net``'s concern).
    """

    def __init__(self, in_dims: dict[str, int], arch: ArchOptions):
        super().__init__()
        hidden = arch.hidden
        self.hidden, self.layers, self.dropout = hidden, arch.layers, arch.dropout
        self.skip, self.degree = arch.skip, arch.degree
        self.exclude = arch.exclude_types
        aggrs = [_aggregation(a) for a in arch.aggr]
        sage_aggr = aggrs[0] if len(aggrs) == 1 else aggrs
        self.inp = nn.ModuleDict({t: _encoder(in_dims[t], hidden, arch.encoder) for t in NODE_TYPES})
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.degs = nn.ModuleList()
        for layer in range(arch.layers):
            last = layer == arch.layers - 1
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
            if arch.degree:  # log1p(in-degree) per edge type, no bias: 0 edges -> exactly 0
                self.degs.append(nn.ModuleDict({"__".join(e): nn.Linear(1, hidden, bias=False)
                                                for e in etypes}))
            if arch.norm is Norm.LAYER:  # per-node LayerNorm: batch-independent in train and eval
                self.norms.append(nn.ModuleDict({t: nn.LayerNorm(hidden) for t in ntypes}))
        head_in = 2 * hidden if arch.skip else hidden
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


class EnsembleSAGE(nn.Module):
    """Several ``HeteroSAGE`` networks (different seeds) whose logits are averaged: the same
    inputs and receptive field, less variance than one early-stopped network."""

    def __init__(self, members: Sequence[HeteroSAGE]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x_dict, edge_index_dict, seed_idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x_dict, edge_index_dict, seed_idx) for m in self.members]).mean(0)


def build_net(in_dims: dict[str, int], arch: ArchOptions) -> nn.Module:
    """The network ``arch`` describes: one ``HeteroSAGE``, or an ``EnsembleSAGE`` of ``arch.ensemble``."""
    if arch.ensemble > 1:
        return EnsembleSAGE([HeteroSAGE(in_dims, arch) for _ in range(arch.ensemble)])
    return HeteroSAGE(in_dims, arch)


def edge_index_dict(data: HeteroData) -> dict:
    """Edge types with at least one edge and a non-empty source type (docs/kafka-notes.md#trap-8).
    Dropping an empty type is exact for ``HeteroSAGE`` (see module doc)."""
    out = {}
    for etype in data.edge_types:
        ei = data[etype].edge_index
        if ei.numel() and data[etype[0]].num_nodes:
            out[etype] = ei
    return out
