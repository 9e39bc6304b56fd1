"""A brute-force reference of the graph store's semantics: plain Python over the event list.

Every read scans every version; nothing is indexed or incremental. It restates the rules in
``graph_store/state.py`` and ``graph_store/rings.py`` independently, so the stores are checked
against the rules rather than against themselves.

Deletes (docs/graph_store.md, "Deletes"): an entity is deleted at t when it has a delete at some
d <= t and no version in (d, t] after the latest such d. A deleted entity has no valid version,
and is absent; so is an activity whose contact is deleted; an edge needs both ends present.

Careers (docs/graph_store.md, "Careers"): the contact's versions and deletes up to t, in time
order (a delete after a version of the same time), each naming its company (a delete none) until
the next one; merged into runs of one company; every run but the last that names a company is a
former stint, with the times of the company's orders as of t dated inside it. Snapshots and
subgraphs carry each contact's career under the key ``"career"`` (``node`` does not).
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Optional, Sequence

from leadpulse.graph_store.career import EMPTY, Career, Stint
from leadpulse.graph_store.records import to_record
from leadpulse.schemas.types import BASE_EDGE_TYPES, reverse

REFS = [  # (holder kind, field, target kind, base edge type or None, holder is source)
    ("contact", "company_id", "company", ("contact", "works_at", "company"), True),
    ("activity", "contact_id", "contact", ("contact", "had_activity", "activity"), False),
    ("activity", "opportunity_id", "opportunity", ("activity", "related_to", "opportunity"), True),
    ("opportunity", "company_id", "company", ("company", "owns", "opportunity"), False),
    ("order", "contact_id", "contact", ("contact", "placed", "order"), False),
    ("order", "company_id", "company", None, False),
]
KINDS = ("company", "contact", "activity", "opportunity", "order")
INF = (1 << 63) - 1


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Reference:
    def __init__(self, events: Iterable, industry_k: int = 8, similar_k: int = 4) -> None:
        self.versions: dict[tuple[str, str], dict[int, dict]] = {}
        self.deletes: dict[tuple[str, str], set[int]] = {}
        for ev in events:
            rec = to_record(ev)
            if ev.kind == "delete":
                self.deletes.setdefault((rec.kind, rec.id), set()).add(rec.time)
            else:
                self.versions.setdefault((rec.kind, rec.id), {}).setdefault(rec.time, rec.attrs)
        self.ks = {"industry_peer": industry_k, "similar_to": similar_k}

    # ------------------------------------------------------------ versions
    def deleted(self, kind: str, nid: str, t: int) -> bool:
        ds = [d for d in self.deletes.get((kind, nid), ()) if d <= t]
        return bool(ds) and not any(max(ds) < tv <= t for tv in self.versions.get((kind, nid), {}))

    def valid(self, kind: str, nid: str, t: int) -> Optional[tuple[int, dict]]:
        if self.deleted(kind, nid, t):
            return None
        vs = [(tv, a) for tv, a in self.versions.get((kind, nid), {}).items() if tv <= t]
        return max(vs, key=lambda x: x[0]) if vs else None

    def present(self, kind: str, nid: str, t: int, first: Optional[dict] = None) -> bool:
        """Exists at t (seen by then) and is not deleted, nor an activity of a deleted contact."""
        ft = (self.first_seen() if first is None else first).get((kind, nid))
        if ft is None or ft > t or self.deleted(kind, nid, t):
            return False
        if kind == "activity":
            v = self.valid(kind, nid, t)
            return v is None or not self.deleted("contact", v[1]["contact_id"], t)
        return True

    def first_seen(self) -> dict[tuple[str, str], int]:
        first: dict = {}
        for (kind, nid), vs in self.versions.items():
            for tv, attrs in vs.items():
                key = (kind, nid)
                first[key] = min(first.get(key, tv), tv)
                for hk, field, target, _, _ in REFS:
                    if hk == kind and attrs.get(field) is not None:
                        key = (target, attrs[field])
                        first[key] = min(first.get(key, tv), tv)
        return first

    def ids(self, kind: str, t: int) -> list[str]:
        first = self.first_seen()
        return sorted(nid for (k, nid) in first if k == kind and self.present(k, nid, t, first))

    # --------------------------------------------------------------- reads
    def timeline(self, cid: str, t: int) -> list:
        rows = []
        for (kind, aid) in self.versions:
            if kind != "activity":
                continue
            v = self.valid("activity", aid, t)
            if v and v[1].get("contact_id") == cid:
                rows.append((v[0], aid, v[1].get("type"), v[1].get("page")))
        return [(tv, typ, page) for tv, _, typ, page in sorted(rows)]

    def orders(self, company: str, t: int) -> list:
        rows = []
        for (kind, oid) in self.versions:
            if kind != "order":
                continue
            v = self.valid("order", oid, t)
            if not v:
                continue
            tv, attrs = v
            owner = attrs.get("company_id")
            if owner is None:
                c = self.valid("contact", attrs["contact_id"], tv)
                owner = c[1].get("company_id") if c else None
            if owner == company:
                rows.append((tv, oid, float(attrs["amount"])))
        return [(tv, amount) for tv, _, amount in sorted(rows)]

    def career(self, cid: str, t: int) -> Career:
        if not self.present("contact", cid, t):
            return EMPTY
        rows = sorted([(tv, 0, attrs.get("company_id")) for tv, attrs in self.versions.get(("contact", cid), {}).items()
                       if tv <= t] + [(d, 1, None) for d in self.deletes.get(("contact", cid), ()) if d <= t])
        runs: list[list] = []
        for k, (tv, _, company) in enumerate(rows):
            end = rows[k + 1][0] if k + 1 < len(rows) else INF
            if tv == end:   # a version at its delete's time is never valid
                continue
            if runs and runs[-1][0] == company:
                runs[-1][2] = end
            else:
                runs.append([company, tv, end])
        former = [r for r in runs[:-1] if r[0] is not None]
        if not former:
            return EMPTY
        stints = tuple(Stint(c, s, e, tuple(tv for tv, _ in self.orders(c, t) if s <= tv < e)) for c, s, e in former)
        return Career(runs[-1][1] if runs[-1][0] is not None else None, stints)

    def node(self, kind: str, nid: str, t: int) -> Optional[dict]:
        if not self.present(kind, nid, t):
            return None
        v = self.valid(kind, nid, t)
        out = dict(v[1]) if v else {}
        if kind == "contact":
            out["timeline"] = self.timeline(nid, t)
        if kind == "company":
            out["orders"] = self.orders(nid, t)
        return out

    def _bucket(self, rel: str, attrs: dict) -> Optional[str]:
        if rel == "industry_peer":
            return attrs.get("industry") or None
        stack = attrs.get("tech_stack") or []
        return min(stack, key=lambda s: (_h(s), s)) if stack else None

    def edges(self, t: int) -> dict[tuple, set]:
        """Every edge as of t: {edge type (base and reverse): {(src, dst, time)}}."""
        out: dict[tuple, set] = {e: set() for e in BASE_EDGE_TYPES}
        first = self.first_seen()
        for hk, field, target, etype, holder_is_src in REFS:
            if etype is None:
                continue
            for (kind, nid) in self.versions:
                if kind != hk:
                    continue
                v = self.valid(kind, nid, t)
                if v and v[1].get(field) is not None:
                    other = v[1][field]
                    if not (self.present(kind, nid, t, first) and self.present(target, other, t, first)):
                        continue
                    out[etype].add((nid, other, v[0]) if holder_is_src else (other, nid, v[0]))
        for rel, k in self.ks.items():
            buckets: dict[str, list] = {}
            times = {}
            for (kind, nid) in self.versions:
                if kind != "company":
                    continue
                v = self.valid(kind, nid, t)
                if v and self._bucket(rel, v[1]) is not None:
                    buckets.setdefault(self._bucket(rel, v[1]), []).append(nid)
                    times[nid] = v[0]
            for members in buckets.values():
                ring = sorted(members, key=lambda c: (_h(c), c))
                n = len(ring)
                for i in range(n):
                    for j in range(n):
                        d = abs(i - j)
                        if i != j and (n <= k + 1 or min(d, n - d) <= k // 2):
                            a, b = ring[i], ring[j]
                            out[("company", rel, "company")].add((a, b, max(times[a], times[b])))
        for etype in BASE_EDGE_TYPES:
            out[reverse(etype)] = {(d, s, tm) for s, d, tm in out[etype]}
        return out

    def neighbors(self, etype: tuple, nid: str, t: int) -> list:
        return sorted(((d, tm) for s, d, tm in self.edges(t)[etype] if s == nid), key=lambda x: (x[1], x[0]))

    def snapshot(self, t: int) -> tuple[dict, dict]:
        nodes = {k: {nid: self.node(k, nid, t) for nid in self.ids(k, t)} for k in KINDS}
        for cid, attrs in nodes["contact"].items():
            attrs["career"] = self.career(cid, t)
        return nodes, self.edges(t)

    def subgraph(self, seeds: Sequence[str], t: int, hops: int = 2) -> tuple[dict, dict]:
        """Nodes within ``hops`` of the seeds; edges with an endpoint within ``hops - 1``."""
        nodes, edges = self.snapshot(t)
        adj: dict = {}
        for (st, _, dt), es in edges.items():
            for s, d, _ in es:
                adj.setdefault((st, s), set()).add((dt, d))
        dist = {("contact", s): 0 for s in seeds if s in nodes["contact"]}
        frontier = list(dist)
        for d in range(hops):
            nxt = []
            for key in frontier:
                for other in adj.get(key, ()):
                    if other not in dist:
                        dist[other] = d + 1
                        nxt.append(other)
            frontier = nxt
        sub_nodes = {k: {nid: a for nid, a in nodes[k].items() if (k, nid) in dist} for k in KINDS}
        inner = {key for key, d in dist.items() if d <= hops - 1}
        sub_edges = {e: {(s, d, tm) for s, d, tm in es if (e[0], s) in inner or (e[2], d) in inner}
                     for e, es in edges.items()}
        return sub_nodes, sub_edges


def as_sets(g) -> tuple[dict, dict]:
    """A store's ``Subgraph`` in the reference's shape: ({type: {id: attrs}}, {etype: {(s, d, t)}})."""
    nodes = {k: dict(zip(g.node_ids[k], map(dict, g.attrs[k]))) for k in KINDS}
    for nid, tl in zip(g.node_ids["contact"], g.all_timelines()):
        nodes["contact"][nid]["timeline"] = list(tl)
    for nid, orders in zip(g.node_ids["company"], g.all_orders()):
        nodes["company"][nid]["orders"] = list(orders)
    for nid, career in zip(g.node_ids["contact"], g.all_careers()):
        nodes["contact"][nid]["career"] = career
    edges = {}
    for etype, arr in g.edges.items():
        s_ids, d_ids = g.node_ids[etype[0]], g.node_ids[etype[2]]
        edges[etype] = {(s_ids[a], d_ids[b], int(tm)) for a, b, tm in zip(arr[0], arr[1], g.edge_time[etype])}
    return nodes, edges
