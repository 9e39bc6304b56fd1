"""Helpers shared by the worker tests (imported through tests/stream on sys.path)."""
from __future__ import annotations

import json
import time
from typing import Callable


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")



def last_scores(records) -> dict[str, dict]:
    """contact_id -> the last leads.scores value published for it."""
    out: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = json.loads(r.value)
        out[value["contact_id"]] = value
    return out



def graph_signature(store, as_of: int) -> tuple:
    """Everything a snapshot says, in a comparable form (ids, attributes, edges with times)."""
    g = store.snapshot(as_of)
    nodes = tuple(sorted((t, tuple(ids)) for t, ids in g.node_ids.items()))
    attrs = tuple(sorted((t, repr(sorted(zip(g.node_ids[t], map(repr, a))))) for t, a in g.attrs.items()))
    edges = []
    for et, idx in g.edges.items():
        src, _, dst = et
        pairs = sorted(zip((g.node_ids[src][i] for i in idx[0]), (g.node_ids[dst][j] for j in idx[1]),
                           g.edge_time[et].tolist()))
        edges.append((et, tuple(pairs)))
    return nodes, attrs, tuple(sorted(edges))
