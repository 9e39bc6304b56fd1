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
        for layer, conv in enumerate(self.convs):
            h = self._round(layer, conv(h, edge_index_dict), edge_index_dict, h)
        return self._out(h[CONTACT], h0)

    def _round(self, layer: int, msgs: dict, edges: dict, dst: dict) -> dict:
        """One round's new embeddings of ``dst`` rows (the destination rows of ``edges``) from
        the messages the round's HeteroConv computed over ``edges``."""
        roots = self.roots[layer]
        if self.degree:
            for e, lin in self.degs[layer].items():
                etype = tuple(e.split("__"))
                ei = edges.get(etype)
                if ei is None or etype[2] not in roots:
                    continue
                rows = dst[etype[2]]
                deg = torch.zeros(rows.shape[0], dtype=rows.dtype).index_add_(
                    0, ei[1], torch.ones(ei.shape[1], dtype=rows.dtype))
                term = lin(torch.log1p(deg).unsqueeze(-1))
                msgs[etype[2]] = msgs[etype[2]] + term if etype[2] in msgs else term
        new = {}
        for t, root in roots.items():
            out = root(dst[t])
            if t in msgs:
                out = out + msgs[t]
            if len(self.norms):
                out = self.norms[layer][t](out)
            out = torch.relu(out)
            new[t] = nn.functional.dropout(out, self.dropout, self.training)
        return new

    def _out(self, h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, torch.relu(h0)], dim=-1) if self.skip else h

    def forward(self, x_dict, edge_index_dict, seed_idx: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._seeds_only(x_dict, edge_index_dict, seed_idx)
        # the head runs on every contact, then the seeds are picked: a float32 matmul over the
        # seed rows alone can round a row differently depending on where it sits in the block,
        # so a lead's score would depend (~1e-8) on the order leads were requested in
        return self.head(self.embed(x_dict, edge_index_dict)).squeeze(-1)[seed_idx]

    # ------------------------------------------------------------------ inference
    def _seeds_only(self, x_dict, edge_index_dict, seed_idx: torch.Tensor) -> torch.Tensor:
        """The seeds' logits, each round computed only for the rows the seeds' logits read.

        Round ``l`` of ``L`` needs the nodes at most ``L - 1 - l`` hops upstream of a seed (the
        last round: the seeds alone), so rows are put in order of that distance and every round
        works on a prefix (PyG's ``trim_to_layer`` idea, for an induced union rather than a
        sampled one). Every edge into a kept row comes from a row kept one round earlier, so a
        kept row's inputs, degree included, are exactly its inputs on the whole graph: the same
        logits from about half the rows in round one of the stream's 2-hop unions (colleagues,
        peer companies and the account's opportunities are only inputs there) and from the
        seeds alone in round two. The seeds are kept in graph order, so a lead's logit
        does not depend on the order leads were requested in. Eval mode only: training keeps
        the whole-graph path, whose dropout draws a training run's randomness from.
        """
        order, sizes = _by_distance(x_dict, edge_index_dict, seed_idx, self.layers, self.exclude)
        x = {t: x_dict[t][order[t]] for t in order}
        rank = {t: torch.empty_like(o).index_put_((o,), torch.arange(len(o))) for t, o in order.items()}
        edges = {e: torch.stack([rank[e[0]][ei[0]], rank[e[2]][ei[1]]])
                 for e, ei in edge_index_dict.items() if e[0] in rank and e[2] in rank}
        h = {t: self.inp[t](x[t][:sizes[0][t]]) for t in x}
        h0 = h[CONTACT]
        for layer, conv in enumerate(self.convs):
            keep = sizes[layer + 1]
            live = {e: ei[:, ei[1] < keep[e[2]]] for e, ei in edges.items() if e in conv.convs}
            live = {e: ei for e, ei in live.items() if ei.shape[1]}  # an empty type adds exactly 0
            pairs = {e: (h[e[0]], h[e[2]][:keep[e[2]]]) for e in live}
            dst = {t: h[t][:keep[t]] for t in self.roots[layer]}
            h = self._round(layer, conv(pairs, live), live, dst)
        n_seeds = keep[CONTACT]
        logits = self.head(self._out(h[CONTACT], h0[:n_seeds])).squeeze(-1)
        return logits[rank[CONTACT][seed_idx]]


def _by_distance(x_dict: dict, edge_index_dict: dict, seed_idx: torch.Tensor, layers: int,
                 exclude) -> tuple[dict, list[dict]]:
    """Rows per node type in order of their distance upstream of the seeds (``layers + 1``
    meaning "farther"), stably, and per round ``l`` (0 = the input map) how many rows of each
    type lie within ``layers - l`` hops."""
    far = layers + 1
    dist = {t: torch.full((x.shape[0],), far, dtype=torch.long) for t, x in x_dict.items() if t not in exclude}
    dist[CONTACT][seed_idx] = 0
    for hop in range(1, layers + 1):
        for (src, _rel, dst), ei in edge_index_dict.items():
            if src not in dist or dst not in dist or not ei.numel():
                continue
            src_idx = ei[0][dist[dst][ei[1]] == hop - 1]
            if src_idx.numel():
                dist[src][src_idx] = torch.minimum(dist[src][src_idx], torch.tensor(hop))
    order = {t: torch.sort(d, stable=True) for t, d in dist.items()}
    sizes = [{t: int(torch.searchsorted(o.values, layers - layer, right=True)) for t, o in order.items()}
             for layer in range(layers + 1)]
    return {t: o.indices for t, o in order.items()}, sizes


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
