"""A 2-layer message-passing "GNN" in plain Python: sums of random hashes over typed edges.

Any change of a node's features (attributes, timeline, orders), of an edge or of an edge time
within a seed's receptive field changes the seed's value (up to hash collisions mod 2**61-1).
"""
from __future__ import annotations

import hashlib

P = (1 << 61) - 1


def _h(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big") % P


def embed(nodes: dict, edges: dict, layers: int = 2) -> dict:
    """``nodes``: {type: {id: attrs}}, ``edges``: {etype: {(src, dst, time)}} (reference shape)."""
    h = {(k, nid): _h("x", k, nid, sorted((a, repr(v)) for a, v in attrs.items()))
         for k, per in nodes.items() for nid, attrs in per.items()}
    for layer in range(layers):
        new = {key: (v * _h("self", layer)) % P for key, v in h.items()}
        for etype, es in edges.items():
            w, wt = _h("w", layer, etype), _h("t", layer, etype)
            for s, d, tm in es:
                key = (etype[2], d)
                new[key] = (new[key] + h[(etype[0], s)] * w + _h(tm) * wt) % P
        h = new
    return h


def contact_values(nodes: dict, edges: dict) -> dict:
    h = embed(nodes, edges)
    return {nid: h[("contact", nid)] for nid in nodes["contact"]}
