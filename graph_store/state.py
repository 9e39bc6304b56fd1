"""The in-memory temporal heterograph both stores read from.

``GraphState`` holds every node version and every edge interval, keyed for the reads the
model needs (as-of attributes, typed neighbours, per-contact timelines, per-company orders).
The RocksDB store keeps it as a write-through cache of its durable keys and rebuilds it at
open; the in-memory store is nothing else.

Semantics (the brute-force reference in ``tests/graph_store/reference.py`` spells the same):

* A version is ``(kind, id, time)``; a second event with the same triple changes nothing.
* A node exists as of t from the earliest time at which it has a version or is referenced
  (``records.REFS``, and the company an order names). Before its own first version it is a
  stub: attributes ``{}``.
* Attributes as of t are those of the latest version with time <= t (a version replaces the
  previous one; it is not merged).
* Each version of a holder asserts its reference edges from its time until the holder's next
  version; the edge's time is the asserting version's time.
* A contact's timeline as of t: ``(time, type, page)`` of the activities linked to it as of t.
* A company's orders as of t: ``(time, amount)`` of the orders whose valid version names the
  company (``company_id``) or, without one, whose contact worked there at the order's time.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Iterator, NamedTuple, Optional

from graph_store.records import (ETYPES, EXTRA_REFS, KINDS, NB, REFS, RING_KINDS as RING_CODES, Record,
                                 industry_bucket, similar_bucket)
from graph_store.rings import INF, Rings
from schemas.types import COMPANY, CONTACT, ORDER

HAD_ACTIVITY_CODE = [r for r in REFS["activity"] if r.field == "contact_id"][0].etype
PLACED_CODE = REFS[ORDER][0].etype
REPLICATED = -1   # partition mask of replicated versions (company attributes)

NEW, NEW_IN_PARTITION, DUPLICATE = 0, 1, 2


class Node:
    """One entity: its existence time, versions, adjacency and derived per-node lists."""
    __slots__ = ("first", "times", "vals", "parts", "adj", "aux", "bk", "tl", "tlc")

    def __init__(self, first: int) -> None:
        self.first = first
        self.times: list[int] = []
        self.vals: list[dict] = []
        self.parts: list[int] = []
        self.adj: Optional[dict[int, list[tuple[int, int, str]]]] = None
        self.aux: Optional[list] = None   # order: attribution; company: attributed orders
        self.bk: Optional[list] = None    # company: (industry bucket, similar bucket) per version
        self.tl: Optional[list] = None    # contact: sorted (time, activity id, end, type, page)
        self.tlc: Optional[tuple] = None  # contact: (from time, timeline) valid for every t >= from

    def valid(self, t: int) -> int:
        """Index of the version valid at ``t`` (-1: none yet)."""
        times = self.times
        if len(times) == 1:
            return 0 if times[0] <= t else -1
        return bisect_right(times, t) - 1


class Change(NamedTuple):
    status: int
    time: int
    feature_nodes: frozenset
    edge_nodes: frozenset
    attrs: Optional[dict] = None   # the stored attrs, for a version new in this partition


class GraphState:
    def __init__(self, industry_k: int = 8, similar_k: int = 4, ring_breakpoints: int = 32) -> None:
        self.nodes: dict[str, dict[str, Node]] = {k: {} for k in KINDS}
        self.rings = Rings(self.nodes[COMPANY], (industry_k, similar_k), ring_breakpoints)
        self.options = (industry_k, similar_k, ring_breakpoints)
        self.t_min, self.t_max = INF, -INF   # earliest and latest version time

    # ================================================================= writes
    def apply(self, rec: Record, mask: int) -> Change:
        """Insert version ``rec`` held by partitions ``mask`` (``REPLICATED`` for companies)."""
        kind, nid, t, attrs = rec
        nodes = self.nodes[kind]
        node = nodes.get(nid)
        if node is None:
            node = nodes[nid] = Node(t)
        times = node.times
        i = bisect_left(times, t)
        if i < len(times) and times[i] == t:
            nominal = self._nominal(kind, nid, node.vals[i])
            if node.parts[i] & mask == mask:
                return Change(DUPLICATE, t, nominal, nominal)
            node.parts[i] |= mask   # first delivery wins: the stored attrs stay
            return Change(NEW_IN_PARTITION, t, nominal, nominal, node.vals[i])
        times.insert(i, t)
        if t < self.t_min:
            self.t_min = t
        if t > self.t_max:
            self.t_max = t
        node.vals.insert(i, attrs)
        node.parts.insert(i, mask)
        if t < node.first:
            node.first = t
        feats = {(kind, nid)}
        edges: set = set()
        nxt = times[i + 1] if i + 1 < len(times) else INF
        prev = node.vals[i - 1] if i > 0 else None
        for ref in REFS[kind]:
            new_v = attrs.get(ref.field)
            old_v = prev.get(ref.field) if prev is not None else None
            if old_v is not None:   # the previous version's edge now ends at t
                pt = times[i - 1]
                self._unlink(ref, kind, nid, old_v, pt, nxt, prev)
                self._link(ref, kind, nid, old_v, pt, t, prev)
                edges.add((ref.target, old_v))
            if new_v is not None:
                self._touch(ref.target, new_v, t, feats)
                self._link(ref, kind, nid, new_v, t, nxt, attrs)
                edges.add((ref.target, new_v))
            if ref.target == CONTACT and kind == "activity":   # timelines of both contacts
                for v in (old_v, new_v):
                    if v is not None:
                        feats.add((CONTACT, v))
        for field, target in EXTRA_REFS.get(kind, ()):
            value = attrs.get(field)
            if value is not None:
                self._touch(target, value, t, feats)
        if edges:
            edges.add((kind, nid))
        if kind == ORDER:
            self._attribute(nid, feats)
        elif kind == CONTACT:
            for oid in {e[2] for e in (node.adj or {}).get(PLACED_CODE, ())}:
                self._attribute(oid, feats)
        elif kind == COMPANY:
            if node.bk is None:
                node.bk = []
            node.bk.insert(i, (industry_bucket(attrs), similar_bucket(attrs)))
            for c in self.rings.on_version(nid, node, i):
                edges.add((COMPANY, c))
        return Change(NEW, t, frozenset(feats), frozenset(edges))

    @staticmethod
    def _nominal(kind: str, nid: str, attrs: dict) -> frozenset:
        """The nodes a version touches directly (reported for duplicates, which change nothing,
        so a caller replaying after a crash can still rescore around them)."""
        out = {(kind, nid)}
        for ref in REFS[kind]:
            if attrs.get(ref.field) is not None:
                out.add((ref.target, attrs[ref.field]))
        for field, target in EXTRA_REFS.get(kind, ()):
            if attrs.get(field) is not None:
                out.add((target, attrs[field]))
        return frozenset(out)

    def _touch(self, ntype: str, nid: str, t: int, feats: set) -> None:
        nodes = self.nodes[ntype]
        node = nodes.get(nid)
        if node is None:
            nodes[nid] = Node(t)
            feats.add((ntype, nid))
        elif t < node.first:
            node.first = t
            feats.add((ntype, nid))

    def _link(self, ref, kind: str, hid: str, tid: str, s: int, e: int, vattrs: dict) -> None:
        holder = self.nodes[kind][hid]
        target = self.nodes[ref.target][tid]
        code = ref.etype
        if code == HAD_ACTIVITY_CODE:
            if target.tl is None:
                target.tl = []
            insort(target.tl, (s, hid, e, vattrs.get("type"), vattrs.get("page")))
            target.tlc = None
        if ref.holder_is_src:
            src, dst, sid, did = holder, target, hid, tid
        else:
            src, dst, sid, did = target, holder, tid, hid
        if src.adj is None:
            src.adj = {}
        if dst.adj is None:
            dst.adj = {}
        src.adj.setdefault(code, []).append((s, e, did))
        dst.adj.setdefault(code + NB, []).append((s, e, sid))

    def _unlink(self, ref, kind: str, hid: str, tid: str, s: int, e: int, vattrs: dict) -> None:
        holder = self.nodes[kind][hid]
        target = self.nodes[ref.target][tid]
        code = ref.etype
        if code == HAD_ACTIVITY_CODE:
            target.tl.remove((s, hid, e, vattrs.get("type"), vattrs.get("page")))
            target.tlc = None
        if ref.holder_is_src:
            holder.adj[code].remove((s, e, tid))
            target.adj[code + NB].remove((s, e, hid))
        else:
            target.adj[code].remove((s, e, hid))
            holder.adj[code + NB].remove((s, e, tid))

    def company_of_contact(self, cid: str, t: int) -> Optional[str]:
        node = self.nodes[CONTACT].get(cid)
        if node is None or not node.times:
            return None
        i = node.valid(t)
        return node.vals[i].get("company_id") if i >= 0 else None

    def _attribute(self, oid: str, feats: set) -> None:
        """Recompute which company each version of order ``oid`` counts for."""
        node = self.nodes[ORDER][oid]
        new = []
        n = len(node.times)
        for k in range(n):
            tv, attrs = node.times[k], node.vals[k]
            company = attrs.get("company_id") or self.company_of_contact(attrs.get("contact_id"), tv)
            if company is not None:
                end = node.times[k + 1] if k + 1 < n else INF
                new.append((company, (tv, oid, end, float(attrs.get("amount", 0.0)))))
        old = node.aux or []
        if old == new:
            return
        companies = self.nodes[COMPANY]
        for company, entry in old:
            if (company, entry) not in new:
                companies[company].aux.remove(entry)
                feats.add((COMPANY, company))
        for company, entry in new:
            if (company, entry) not in old:
                cnode = companies.get(company)
                if cnode is None:   # only a contact's company: it exists already
                    cnode = companies[company] = Node(entry[0])
                if cnode.aux is None:
                    cnode.aux = []
                insort(cnode.aux, entry)
                feats.add((COMPANY, company))
        node.aux = new

    # ================================================================== reads
    def get(self, ntype: str, nid: str, t: int) -> Optional[Node]:
        node = self.nodes[ntype].get(nid)
        return node if node is not None and node.first <= t else None

    def attrs(self, ntype: str, nid: str, t: int) -> Optional[dict]:
        """Version attributes plus the derived lists (``timeline``, ``orders``); None if absent."""
        node = self.get(ntype, nid, t)
        if node is None:
            return None
        i = node.valid(t) if node.times else -1
        out = dict(node.vals[i]) if i >= 0 else {}
        if ntype == CONTACT:
            out["timeline"] = self.timeline_of(node, t)
        elif ntype == COMPANY:
            out["orders"] = self.orders_of(node, t)
        return out

    @staticmethod
    def timeline_of(node: Node, t: int) -> list:
        tl = node.tl
        if not tl:
            return []
        cached = node.tlc
        if cached is not None and t >= cached[0]:
            return list(cached[1])
        out = [(s, typ, page) for s, _, e, typ, page in tl if s <= t < e]
        last = max(max(s for s, *_ in tl), max((e for _, _, e, _, _ in tl if e != INF), default=0))
        if t >= last:   # nothing starts or ends later: the same list for every t >= last
            node.tlc = (last, out)
            return list(out)
        return out

    @staticmethod
    def orders_of(node: Node, t: int) -> list:
        if not node.aux:
            return []
        return [(tv, amount) for tv, _, end, amount in node.aux if tv <= t < end]

    def edges_at(self, ntype: str, nid: str, node: Node, t: int) -> Iterator[tuple[int, str, int]]:
        """Every edge of the node valid at ``t``: ``(edge type code, neighbour id, time)``."""
        if node.adj:
            for code, entries in node.adj.items():
                for s, e, other in entries:
                    if s <= t < e:
                        yield code, other, s
        if ntype == COMPANY and node.bk:
            for r, code in ((0, RING_CODES[0]), (1, RING_CODES[1])):
                for other, et in self.rings.peers(r, nid, t):
                    yield code, other, et
                    yield code + NB, other, et

    def neighbors(self, code: int, nid: str, t: int) -> list[tuple[str, int]]:
        src_type = ETYPES[code][0]
        node = self.get(src_type, nid, t)
        if node is None:
            return []
        base = code % NB
        if base in RING_CODES:
            out = self.rings.peers(RING_CODES.index(base), nid, t)
        else:
            out = [(o, s) for s, e, o in (node.adj or {}).get(code, ()) if s <= t < e]
        return sorted(out, key=lambda x: (x[1], x[0]))

    def ids(self, ntype: str, t: int) -> list[str]:
        return sorted(k for k, n in self.nodes[ntype].items() if n.first <= t)

    # ============================================================ partitions
    def versions(self) -> Iterator[tuple[Record, int]]:
        """Every stored version with its partition mask (to rebuild or drop a partition)."""
        for kind, nodes in self.nodes.items():
            for nid, node in nodes.items():
                for t, attrs, mask in zip(node.times, node.vals, node.parts):
                    yield Record(kind, nid, t, attrs), mask

    def without_partition(self, partition: int) -> "GraphState":
        bit = 1 << partition
        fresh = GraphState(*self.options)
        for rec, mask in self.versions():
            if mask != REPLICATED:
                mask &= ~bit
                if not mask:
                    continue
            fresh.apply(rec, mask)
        return fresh

