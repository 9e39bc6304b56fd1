"""The read side shared by both stores: every read is answered from a ``GraphState``."""
from __future__ import annotations

import gc
import logging
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from leadpulse.graph_store import affected, extract
from leadpulse.graph_store.base import ApplyEffect, GraphStore, Subgraph
from leadpulse.graph_store.career import EMPTY, Career, career_of
from leadpulse.graph_store.errors import StoreClosed
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.records import ETYPE_CODE, Record, to_record
from leadpulse.graph_store.state import NEW, Change, GraphState
from leadpulse.schemas.events import Delete, InputEvent
from leadpulse.schemas.types import COMPANY, CONTACT, NODE_TYPES, EdgeType, NodeType

logger = logging.getLogger(__name__)
_new, _setattr = object.__new__, object.__setattr__


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic GC around bulk work.

    The store creates many small long-lived objects; every full collection would walk the
    whole graph, a large share of apply and extraction time
    (docs/graph_store.md#measurements-behind-the-code). The store makes no reference cycles,
    so nothing is leaked; the previous GC state is restored afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class StateBackedStore(GraphStore):
    """Implements the reads of ``GraphStore`` over ``self._state`` (set by subclasses)."""

    def __init__(self, options: GraphStoreOptions | None = None) -> None:
        self.options = options or GraphStoreOptions()
        self._state: Optional[GraphState] = self._new_state()
        #: partition -> (topic, partition) -> next offset, as committed with that partition's data
        self._positions: dict[int, dict[tuple[str, int], int]] = {}

    def positions(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for per in self._positions.values():
            for key, off in per.items():
                out[key] = max(off, out.get(key, off))
        return out

    def _new_state(self) -> GraphState:
        o = self.options
        return GraphState(o.industry_k, o.similar_k, o.ring_breakpoints)

    @property
    def state(self) -> GraphState:
        if self._state is None:
            raise StoreClosed("the graph store is closed")
        return self._state

    @staticmethod
    def _effects(events: Sequence[InputEvent], changes: Sequence[Change]) -> list[ApplyEffect]:
        """One ``ApplyEffect`` per event, built without the frozen dataclass's ``__init__`` (five
        ``object.__setattr__`` calls, a visible share of an in-memory apply:
        docs/graph_store.md#measurements-behind-the-code); the instances are equal to
        constructed ones (tests/graph_store/test_index.py)."""
        out = []
        append = out.append
        for ev, ch in zip(events, changes):
            effect = _new(ApplyEffect)
            _setattr(effect, "__dict__", {"event": ev, "changed": ch[0] == NEW, "feature_nodes": ch[2],
                                          "edge_nodes": ch[3], "time": ch[1]})
            append(effect)
        return out

    @staticmethod
    def _records(events: Sequence[InputEvent]) -> list[Record]:
        return [to_record(ev) for ev in events]

    # ------------------------------------------------------------------ reads
    def time_span(self) -> Optional[tuple[int, int]]:
        state = self.state
        return None if state.t_min > state.t_max else (state.t_min, state.t_max)

    def node(self, ntype: NodeType, node_id: str, as_of: int) -> Optional[dict]:
        return self.state.attrs(ntype, node_id, as_of)

    def node_ids(self, ntype: NodeType, as_of: int) -> list[str]:
        if ntype not in NODE_TYPES:
            raise KeyError(f"unknown node type {ntype!r}")
        return self.state.ids(ntype, as_of)

    def neighbors(self, etype: EdgeType, node_id: str, as_of: int) -> list[tuple[str, int]]:
        return self.state.neighbors(ETYPE_CODE[tuple(etype)], node_id, as_of)

    def timeline(self, contact_id: str, as_of: int) -> list[tuple[int, str, Optional[str]]]:
        idx = self.state.get(CONTACT, contact_id, as_of)
        return self.state.timeline(idx, as_of) if idx is not None else []

    def company_orders(self, company_id: str, as_of: int) -> list[tuple[int, float]]:
        idx = self.state.get(COMPANY, company_id, as_of)
        return self.state.orders(idx, as_of) if idx is not None else []

    def career(self, contact_id: str, as_of: int) -> Career:
        idx = self.state.get(CONTACT, contact_id, as_of)
        return career_of(self.state, idx, as_of) if idx is not None else EMPTY

    def subgraph(self, seeds: Sequence[str], as_of: int, hops: int = 2,
                 activity_days: Optional[float] = None) -> Subgraph:
        """Seeds that do not exist at ``as_of`` are left out; ``Subgraph.seeds`` lists the rest
        in request order (duplicates once)."""
        with paused_gc():
            return extract.subgraph(self.state, seeds, as_of, hops, activity_days)

    def snapshot(self, as_of: int) -> Subgraph:
        with paused_gc():
            return extract.snapshot(self.state, as_of)

    def affected_leads(self, effects: Sequence[ApplyEffect], as_of: int, hops: int = 2) -> set[str]:
        return self.affected_leads_each([effects], as_of, hops)[0]

    def affected_leads_each(self, groups: Sequence[Sequence[ApplyEffect]], as_of: int,
                            hops: int = 2) -> list[set[str]]:
        return self.affected_leads_at(groups, [as_of], hops)[0]

    def affected_leads_at(self, groups: Sequence[Sequence[ApplyEffect]], times: Sequence[int],
                          hops: int = 2) -> list[list[set[str]]]:
        memo: dict = {}   # node reaches with the interval each holds for, shared by the times
        with paused_gc():
            return [[self._affected_group(effects, t, hops, memo) for effects in groups] for t in times]

    def _affected_group(self, effects: Sequence[ApplyEffect], as_of: int, hops: int, memo: dict) -> set[str]:
        feats: set = set()
        edges: set = set()
        gone: set = set()
        for eff in effects:
            if not eff.changed or (eff.time is not None and eff.time > as_of):
                continue
            feats |= eff.feature_nodes
            edges |= eff.edge_nodes
            ev = eff.event
            if ev.__class__ is Delete and ev.entity == CONTACT and (CONTACT, ev.entity_id) in eff.feature_nodes:
                gone.add(ev.entity_id)
        found = affected.affected(self.state, feats, edges, as_of, hops, memo) if feats or edges else set()
        if gone:
            found |= self._deleted_contacts(gone, as_of)
        return found

    def _deleted_contacts(self, ids: set, as_of: int) -> set[str]:
        """The contacts of ``ids`` deleted as of ``as_of``: absent from the graph, so no search
        finds them, yet their score changed (to none: the stream publishes a tombstone)."""
        tab = self.state.tables[CONTACT]
        return {c for c in ids if (i := tab.ids.get(c)) is not None and tab.first[i] <= as_of and tab.dead(i, as_of)}
