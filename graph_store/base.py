"""The graph store contract: one interface, two implementations (RocksDB, in-memory).

Times are integer microseconds since the epoch (``schemas.timeutil``). Every read takes an
explicit ``as_of`` and sees only events whose event time is ``<= as_of``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence

import numpy as np

from leadpulse.graph_store.career import EMPTY, Career
from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import ACTIVITY, COMPANY, CONTACT, EDGE_TYPES, WORKS_AT, EdgeType, NodeType

#: (topic, partition) -> next offset to consume (Kafka's committed-offset convention)
Positions = Mapping[tuple[str, int], int]

#: edge types with an activity at one end (both directions): what an activity window cuts
_ACTIVITY_EDGES: tuple[EdgeType, ...] = tuple(e for e in EDGE_TYPES if ACTIVITY in (e[0], e[2]))


def activity_cut(as_of: int, activity_days: Optional[float]) -> Optional[int]:
    """The time an activity window of ``activity_days`` leaves out (an activity whose version
    time is ``<=`` it is outside), or None for no window. One rule for the store's reads and
    ``Subgraph.recent_activities``, so a windowed read equals a windowed snapshot."""
    if activity_days is None:
        return None
    return as_of - int(round(activity_days * MICROS_PER_DAY))


@dataclass(frozen=True)
class ApplyEffect:
    """What applying one event changed, as input to ``affected_leads``.

    Args:
        event: the event applied.
        changed: False when the event was a duplicate (same entity id and version time
            already applied): nothing changed and nothing needs rescoring.
        feature_nodes: nodes whose own input attributes or per-node timelines changed.
        edge_nodes: endpoints of edges added or removed by the event.
        time: the event time (micros). Reads as of an earlier time are unchanged by the
            event, so ``affected_leads(..., as_of)`` ignores effects with ``time > as_of``.
            None (the default) means "unknown": never ignored.

    The node sets cover every as-of time >= ``time`` (for an event applied late they may
    over-approximate what changed at one particular as-of time). For a duplicate
    (``changed`` False) they name the nodes the event touches directly (its entity and the
    entities it references): ``affected_leads`` ignores them unless the caller deliberately
    passes a copy with ``changed=True`` (e.g. to rescore after a crash replay).
    """
    event: InputEvent
    changed: bool
    feature_nodes: frozenset[tuple[NodeType, str]] = frozenset()
    edge_nodes: frozenset[tuple[NodeType, str]] = frozenset()
    time: Optional[int] = None


@dataclass
class Subgraph:
    """A heterogeneous graph as of a time, in plain numpy (graph_store has no torch).

    ``model`` turns it into a PyG ``HeteroData``.

    Attributes:
        as_of: the time the graph reflects (micros).
        node_ids: per node type, the entity ids; local index = position in the list.
        attrs: per node type, each node's own attributes (the version valid at ``as_of``; a
            stub node has ``{}``), aligned with ``node_ids``. A store hands out its own stored
            mappings, not copies: read them, never change them (copy first).
        timelines: per contact (aligned with ``node_ids["contact"]``), the ``(time,
            activity_type, page)`` tuples of its activities with time <= as_of, in time order.
            A store gives a ``graph_store.timeline.Timelines`` (one set of columns for the
            whole read); any sequence of sequences will do. Contacts past its end have none.
        orders: per company (aligned with ``node_ids["company"]``), the ``(time, amount)``
            tuples of orders placed by its contacts, time <= as_of. Same conventions.
        careers: per contact (aligned like ``timelines``), its ``graph_store.career.Career`` as
            of ``as_of``: the former employers' stints with the orders dated in each, and when
            it joined its current one. A store gives a ``graph_store.career.Careers``; contacts
            past its end have the empty career (no former employer).
        edges: per edge type (base and reverse), int64 array of shape (2, E) of local indices.
        edge_time: per edge type, int64 array (E,) of the edge's event time.
        seeds: local contact indices of the seed contacts (empty for a full export).

    The timelines and orders are derived per read, so they are kept beside ``attrs`` rather
    than added to copies of them: copying the attribute dicts was a large share of an
    extraction, nearly all of it cache misses on a large store
    (docs/graph_store.md#measurements-behind-the-code).
    """
    as_of: int
    node_ids: dict[NodeType, list[str]] = field(default_factory=dict)
    attrs: dict[NodeType, list[Mapping]] = field(default_factory=dict)
    timelines: Sequence[Sequence[tuple]] = ()
    orders: Sequence[Sequence[tuple]] = ()
    careers: Sequence[Career] = ()
    edges: dict[EdgeType, np.ndarray] = field(default_factory=dict)
    edge_time: dict[EdgeType, np.ndarray] = field(default_factory=dict)
    seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def timeline(self, i: int) -> Sequence[tuple]:
        """Contact ``i``'s timeline (empty when the graph carries none for it)."""
        return self.timelines[i] if i < len(self.timelines) else ()

    def company_orders(self, i: int) -> Sequence[tuple]:
        """Company ``i``'s orders (empty when the graph carries none for it)."""
        return self.orders[i] if i < len(self.orders) else ()

    def career(self, i: int) -> Career:
        """Contact ``i``'s career (empty when the graph carries none for it)."""
        return self.careers[i] if i < len(self.careers) else EMPTY

    def all_careers(self) -> Sequence[Career]:
        """One career per contact, ``careers`` itself when it covers them all."""
        n = len(self.node_ids.get(CONTACT, ()))
        if len(self.careers) == n:
            return self.careers
        return [self.careers[i] if i < len(self.careers) else EMPTY for i in range(n)]

    def all_timelines(self) -> Sequence[Sequence[tuple]]:
        """One timeline per contact, ``timelines`` itself when it covers them all."""
        return _padded(self.timelines, len(self.node_ids.get(CONTACT, ())))

    def all_orders(self) -> Sequence[Sequence[tuple]]:
        """One order list per company, ``orders`` itself when it covers them all."""
        return _padded(self.orders, len(self.node_ids.get(COMPANY, ())))

    def recent_activities(self, activity_days: Optional[float]) -> "Subgraph":
        """This graph with only the activity nodes of the last ``activity_days`` (version time
        after ``activity_cut``) and their edges; itself when none is older (or no window). The
        contacts' timelines are kept whole: a window bounds the nodes a read carries, not what
        a contact's aggregates count."""
        cut = activity_cut(self.as_of, activity_days)
        n = len(self.node_ids.get(ACTIVITY, ()))
        if cut is None or not n:
            return self
        newest = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        linked = np.zeros(n, dtype=bool)
        for et in _ACTIVITY_EDGES:
            ei, times = self.edges.get(et), self.edge_time.get(et)
            if ei is None or not ei.shape[1] or times is None:
                continue
            side = ei[0] if et[0] == ACTIVITY else ei[1]
            linked[side] = True
            np.maximum.at(newest, side, times)
        keep = (newest > cut) | ~linked   # an activity without edges feeds nothing: kept as it is
        if keep.all():
            return self
        remap = np.full(n, -1, dtype=np.int64)
        kept = np.flatnonzero(keep)
        remap[kept] = np.arange(len(kept))
        ids, attrs = self.node_ids[ACTIVITY], self.attrs.get(ACTIVITY, [])
        edges, edge_time = dict(self.edges), dict(self.edge_time)
        for et in _ACTIVITY_EDGES:
            ei = edges.get(et)
            if ei is None or not ei.shape[1]:
                continue
            side = 0 if et[0] == ACTIVITY else 1
            ok = keep[ei[side]]
            ei = ei[:, ok].copy()
            ei[side] = remap[ei[side]]
            edges[et] = ei
            if et in edge_time:
                edge_time[et] = np.asarray(edge_time[et])[ok]
        return replace(self, node_ids={**self.node_ids, ACTIVITY: [ids[i] for i in kept.tolist()]},
                       attrs={**self.attrs, ACTIVITY: [attrs[i] for i in kept.tolist() if i < len(attrs)]},
                       edges=edges, edge_time=edge_time)

    def employers(self) -> dict[str, str]:
        """Contact id -> id of the company its ``works_at`` edge names as of ``as_of`` (a
        contact's version names one); contacts without one are left out."""
        edges = self.edges.get(WORKS_AT)
        if edges is None or not edges.shape[1]:
            return {}
        contacts, companies = self.node_ids[CONTACT], self.node_ids[COMPANY]
        return dict(zip(map(contacts.__getitem__, edges[0].tolist()), map(companies.__getitem__, edges[1].tolist())))


def _padded(per_node: Sequence, n: int) -> Sequence:
    if len(per_node) == n:
        return per_node
    return [per_node[i] if i < len(per_node) else () for i in range(n)]


class GraphStore(ABC):
    """A temporal heterograph of the CRM (nodes, typed timestamped edges, versions)."""

    # ----------------------------------------------------------------- writes
    @abstractmethod
    def apply(self, events: Sequence[InputEvent], positions: Positions | None = None,
              partition: int = 0) -> list[ApplyEffect]:
        """Apply ``events`` and record ``positions`` in one atomic write.

        Idempotent: an event whose (entity id, version time) is already applied changes
        nothing (``ApplyEffect.changed`` is False). Events are applied at their event time,
        whatever their arrival order.
        """

    @abstractmethod
    def positions(self) -> dict[tuple[str, int], int]:
        """The source positions recorded by the last committed ``apply``."""

    @abstractmethod
    def drop_partition(self, partition: int) -> None:
        """Forget everything applied under ``partition`` (replicated data stays)."""

    @abstractmethod
    def erase_contact(self, contact_id: str, as_of: int, hops: int = 2) -> set[str]:
        """Remove every trace of a person, at every time (right to erasure).

        Removes all versions and tombstones of the contact, every version and tombstone of the
        activities and orders one of whose applied versions names it (``contact_id``), the
        edge keys they hold or that point at them, and the ``contact_id`` attribute of the
        opportunity versions naming it (the opportunity stays: it belongs to the account), in
        every store partition. Afterwards every read at every time answers as if those records
        had never been applied and no opportunity had named the person; source positions stay.
        A later event for the same id is applied normally. Unlike a ``Delete`` (which hides an
        entity after its time and keeps its history), nothing of the person's history remains.

        Returns the other contacts whose ``hops``-layer output as of ``as_of`` can change,
        computed on the graph before the removal with the ``affected_leads`` rule (the erased
        nodes are feature nodes, the ends of the removed edges are edge nodes); the erased
        contact is not in it. Idempotent: an unknown or already erased id returns an empty set
        and changes nothing. Cost: the in-memory index is rebuilt (O(store)); the RocksDB store
        also compacts its whole key range so no file holds the removed keys any more
        (docs/graph_store.md, "Erasure").
        """

    # ----------------------------------------------------------------- reads
    @abstractmethod
    def node(self, ntype: NodeType, node_id: str, as_of: int) -> Optional[dict]:
        """Attributes of the node version valid at ``as_of``; None if it did not exist."""

    @abstractmethod
    def node_ids(self, ntype: NodeType, as_of: int) -> list[str]:
        """Ids of all nodes of ``ntype`` that exist at ``as_of`` (sorted)."""

    @abstractmethod
    def neighbors(self, etype: EdgeType, node_id: str, as_of: int) -> list[tuple[str, int]]:
        """``(neighbour id, edge time)`` along ``etype`` valid at ``as_of``, sorted by (time, id)."""

    @abstractmethod
    def subgraph(self, seeds: Sequence[str], as_of: int, hops: int = 2,
                 activity_days: Optional[float] = None) -> Subgraph:
        """The union of the exact ``hops``-hop neighbourhoods of seed contacts (no sampling).
        ``activity_days``: only the activities of that window (``activity_cut``) are nodes of
        it, as ``Subgraph.recent_activities`` would leave them; the timelines stay whole."""

    @abstractmethod
    def snapshot(self, as_of: int) -> Subgraph:
        """The whole graph as of ``as_of`` (training and the full-recompute reference)."""

    @abstractmethod
    def timeline(self, contact_id: str, as_of: int) -> list[tuple[int, str, Optional[str]]]:
        """``(time, activity type, page)`` of the contact's activities with time <= as_of."""

    @abstractmethod
    def company_orders(self, company_id: str, as_of: int) -> list[tuple[int, float]]:
        """``(time, amount)`` of the orders counted for the company as of ``as_of``."""

    @abstractmethod
    def affected_leads(self, effects: Sequence[ApplyEffect], as_of: int, hops: int = 2) -> set[str]:
        """Contacts whose ``hops``-layer GNN output can change because of ``effects``."""

    def affected_leads_each(self, groups: Sequence[Sequence[ApplyEffect]], as_of: int,
                            hops: int = 2) -> list[set[str]]:
        """``affected_leads`` of every group, computed together (a store may share work between
        groups: the stream asks once per batch for each event, to name each lead's cause)."""
        return [self.affected_leads(g, as_of, hops) for g in groups]

    def affected_leads_at(self, groups: Sequence[Sequence[ApplyEffect]], times: Sequence[int],
                          hops: int = 2) -> list[list[set[str]]]:
        """``affected_leads_each`` as of each of ``times`` (a store may share work between the
        times too: the stream searches a batch as of each owned partition's watermark)."""
        return [self.affected_leads_each(groups, t, hops) for t in times]

    def career(self, contact_id: str, as_of: int) -> Career:
        """The contact's former employers as of ``as_of`` (``graph_store.career.Career``: the
        stints it left, each with the orders its company placed during it, and when it joined its
        current employer); the empty career for a contact without one, or absent at ``as_of``."""
        raise NotImplementedError

    def time_span(self) -> Optional[tuple[int, int]]:
        """``(earliest, latest)`` version time in the store, or None when it is empty."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook: a store without resources keeps it
        """Release resources (files, handles)."""
