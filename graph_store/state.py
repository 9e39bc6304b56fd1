"""The in-memory temporal heterograph both stores read from: a compact, columnar index.

``GraphState`` holds every node version and every edge interval, laid out for the reads the
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

Layout (one ``Table`` per node type, ``table.py``; integer columns are ``array("q")``, cheap to
append to one event at a time and never traversed by the cyclic GC; ``Table.columns()`` keeps
int64 numpy copies of them for the vectorised reads in ``extract.py``, updated in bulk from what
was appended or changed since the last read):

* Nodes are interned to dense ints: ``ids`` (id -> int), ``names`` (int -> id), and per node
  ``first`` (existence time) and ``latest`` (row of its newest version; -1 for a stub).
* Every version is a *row*: ``vt`` (version time), ``ve`` (the node's next version time, or INF:
  the row is valid during ``[vt, ve)``), ``vp`` (the node's previous version row, -1 for the
  first), ``vn`` (its node), ``parts`` (partition mask), ``attrs`` (the attribute dict), and per
  reference field of the type (``records.REFS[kind][j]``) ``refs[j]``: the target node or -1.
  A version arriving late is linked into its node's chain; only its neighbours' ``ve``/``vp``
  change. "Version of node i valid at t" walks ``vp`` back from ``latest[i]`` while ``vt > t``
  (no step at all for reads at the newest times).
* A holder's row *is* its reference edges: the edge to ``refs[j][row]`` is valid exactly while
  the row is, and its time is ``vt[row]``. Each target node keeps, per base edge type, the list
  of holder rows that ever named it (``rev[etype][node]``: native int64s in a ``bytes``, which
  the cyclic GC never scans and a read gathers with one ``bytes.join``; None when empty; an
  append makes a new ``bytes``, cheaper than ``array.append``); nothing is ever
  removed from it (a superseded row's interval simply ends). ``had_activity`` lists are kept
  sorted by (time, activity id), the timeline order; activity rows carry the type and page of
  their timeline entry as codes (``ttype``, ``tpage``) into the state's interned ``strings``.
* Order attribution (rare: orders are few) stays in dicts: ``oattr`` (order -> the companies its
  versions count for) and ``corders`` (company -> sorted ``(time, order id, end, amount)``).
* Companies also get a small ``CNode`` (version times and buckets) for the derived ring edges
  (``rings.py``).
* A delete is a *tombstone* row (``records.TOMB`` attributes, no references, listed in the
  table's ``tombs``) linked into its node's chain like a version: the version before it ends at
  its time, and a later version ends it (re-creation). A tombstone sorts after a version of the
  same time (the delete wins the tie). So a deleted node's own edges and a deleted activity's
  timeline entry end by themselves; what reads filter is the rest: a node is *alive* at t unless
  its valid row is a tombstone or, for an activity, its contact's is, and an edge needs both ends
  alive. ``GraphState.deletes`` counts tombstones; with none, no read does any of this.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from typing import Iterator, NamedTuple, Optional

import numpy as np

from leadpulse.graph_store.records import (
    ETYPES,
    EXTRA_REFS,
    KINDS,
    NB,
    REFS,
    TOMB,
    WORKS_AT_J,
    Record,
    industry_bucket,
    similar_bucket,
)
from leadpulse.graph_store.records import RING_KINDS as RING_CODES
from leadpulse.graph_store.rings import INF, Rings
from leadpulse.graph_store.table import HOLDER_OF, Table, at_only, held_at, last_row, pack_row, row_span, rows_of
from leadpulse.schemas.types import ACTIVITY, COMPANY, CONTACT, OPPORTUNITY, ORDER

HAD_ACTIVITY_CODE = [r for r in REFS[ACTIVITY] if r.field == "contact_id"][0].etype
PLACED_CODE = REFS[ORDER][0].etype
WORKS_AT_CODE = REFS[CONTACT][WORKS_AT_J].etype
REPLICATED = -1   # partition mask of replicated versions (company attributes)

NEW, NEW_IN_PARTITION, DUPLICATE = 0, 1, 2

_ACTIVITY_CONTACT_J = [j for j, r in enumerate(REFS[ACTIVITY]) if r.field == "contact_id"][0]
#: key sequences of the activity attributes kept as columns only (``GraphState.row_attrs``)
_ACTIVITY_TEMPLATES = frozenset({("activity_id", "contact_id", "type", "timestamp"),
                                 ("activity_id", "contact_id", "type", "timestamp", "page")})


class CNode:
    """A company's version times and (industry, similar) buckets, for ``rings.Rings``."""
    __slots__ = ("times", "bk")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.bk: list[tuple] = []

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


_LOADED = Change(NEW, 0, frozenset(), frozenset())
_tuple_new = tuple.__new__


class GraphState:
    def __init__(self, industry_k: int = 8, similar_k: int = 4, ring_breakpoints: int = 32) -> None:
        self.tables: dict[str, Table] = {k: Table(k) for k in KINDS}
        self.cnodes: dict[str, CNode] = {}
        self.rings = Rings(self.cnodes, (industry_k, similar_k), ring_breakpoints, self.tables[COMPANY].ids)
        self.options = (industry_k, similar_k, ring_breakpoints)
        self.t_min, self.t_max = INF, -INF   # earliest and latest version time
        self.oattr: dict[int, list] = {}     # order node -> [(company id, (time, order id, end, amount))]
        self.corders: dict[int, list] = {}   # company node -> sorted [(time, order id, end, amount)]
        self.ocols: dict[int, bytes] = {}    # ``order_rows`` cache, dropped when corders changes
        #: bulk load (``load`` ... ``finish_load``): no change sets, no ring diffs, timelines sorted once
        self.loading = False
        self.marks: dict[str, object] = {}   # extraction scratch (extract.py)
        self.strings: list = [None]          # timeline types and pages, interned: code -> value
        self.codes: dict = {None: 0}
        self._string_array = np.array(self.strings, dtype=object)
        self.deletes = 0   # tombstone rows in all tables (0: reads skip every delete check)
        #: contacts two of whose adjacent version rows name different companies (or a company and
        #: none): the only ones with a former employer at some time (``career.py``); never shrinks
        self.movers: set[int] = set()
        self._mover_array = np.zeros(0, dtype=np.int64)

    def _code(self, value) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.strings)
            self.strings.append(value)
        return code

    def mover_array(self) -> np.ndarray:
        """``movers`` as a sorted int64 array (rebuilt when it grew)."""
        if len(self._mover_array) != len(self.movers):
            self._mover_array = np.array(sorted(self.movers), dtype=np.int64)
        return self._mover_array

    def string_array(self) -> np.ndarray:
        """``strings`` as a numpy object array (to decode code columns with one gather)."""
        if len(self._string_array) != len(self.strings):
            arr = np.empty(len(self.strings), dtype=object)
            arr[:] = self.strings
            self._string_array = arr
        return self._string_array

    # ================================================================= writes
    def apply_batch(self, records: list[Record], mask: int) -> list[Change]:
        """``apply`` each record in order (companies as ``REPLICATED``, the rest under ``mask``).

        The common event, a new activity naming only its contact, takes an inlined path with
        exactly ``apply``'s effect; everything else goes through ``apply``.
        """
        out: list[Change] = []
        append = out.append
        apply = self.apply
        atab, ctab = self.tables[ACTIVITY], self.tables[CONTACT]
        a_ids, a_names, a_first, a_latest = atab.ids, atab.names, atab.first, atab.latest
        a_vt, a_ve, a_vp, a_vn, a_parts, a_attrs = atab.vt, atab.ve, atab.vp, atab.vn, atab.parts, atab.attrs
        a_ttype, a_tpage, codes, code = atab.ttype, atab.tpage, self.codes, self._code
        a_contact, a_opp = atab.refs[_ACTIVITY_CONTACT_J], atab.refs[1 - _ACTIVITY_CONTACT_J]
        c_ids, c_first = ctab.ids, ctab.first
        had = ctab.rev[HAD_ACTIVITY_CODE]
        loading = self.loading
        for rec in records:
            kind, nid, t, attrs = rec
            # (a tombstone of an unknown activity has no contact_id: it goes through ``apply`` below)
            if kind != ACTIVITY or nid in a_ids or attrs.get("opportunity_id") is not None:
                append(apply(rec, REPLICATED if kind == COMPANY else mask))
                continue
            cid = attrs.get("contact_id")
            if cid is None:
                append(apply(rec, mask))
                continue
            row = len(a_vt)
            a_ids[nid] = len(a_names)   # a new activity node with its first version
            a_vn.append(len(a_names))
            a_names.append(nid)
            a_first.append(t)
            a_latest.append(row)
            a_vt.append(t)
            a_ve.append(INF)
            a_vp.append(-1)
            a_parts.append(mask)
            v = attrs.get("type")
            c = codes.get(v)
            a_ttype.append(code(v) if c is None else c)
            page = attrs.get("page")
            c = codes.get(page)
            a_tpage.append(code(page) if c is None else c)
            # the common attributes are the columns: keep no dict (row_attrs rebuilds it)
            a_attrs.append(None if (tuple(attrs) in _ACTIVITY_TEMPLATES and v.__class__ is str
                                    and (page is None or page.__class__ is str)) else attrs)
            if t < self.t_min:
                self.t_min = t
            if t > self.t_max:
                self.t_max = t
            c = c_ids.get(cid)   # _touch(contact)
            if c is None:
                c = ctab.add(cid, t)
            elif t < c_first[c]:
                c_first[c] = t
                ctab.dirty_nodes.append(c)
            a_contact.append(c)
            a_opp.append(-1)
            held = had[c]
            if held is None:
                had[c] = pack_row(row)
            elif loading:
                had[c] = held + pack_row(row)
            else:
                last = last_row(held, len(held) - 8)[0]
                lt = a_vt[last]
                if t > lt or (t == lt and nid > a_names[a_vn[last]]):
                    had[c] = held + pack_row(row)
                else:
                    had[c] = self._insert_row(held, row)
            if loading:
                append(_LOADED)
            else:   # feature and edge nodes are both {activity, contact}
                both = frozenset(((ACTIVITY, nid), (CONTACT, cid)))
                append(_tuple_new(Change, (NEW, t, both, both, None)))
        return out

    def apply(self, rec: Record, mask: int) -> Change:
        """Insert version ``rec`` held by partitions ``mask`` (``REPLICATED`` for companies)."""
        kind, nid, t, attrs = rec
        tomb = attrs is TOMB
        tab = self.tables[kind]
        idx = tab.ids.get(nid)
        vt = tab.vt
        prev = nxt = -1
        unknown = idx is None
        if unknown:
            idx = tab.add(nid, t)
        else:
            prev = tab.latest[idx]
            vp = tab.vp
            while prev >= 0 and vt[prev] > t:
                nxt = prev
                prev = vp[prev]
            tombs = tab.tombs
            if prev >= 0 and vt[prev] == t and not tomb and prev in tombs:
                nxt = prev   # a version at a tombstone's time sits before it: the delete wins the tie
                prev = vp[prev]
            if prev >= 0 and vt[prev] == t and (prev in tombs) == tomb:
                stored = self.row_attrs(tab, prev)
                nominal = self._nominal(kind, nid, stored)
                if tab.parts[prev] & mask == mask:
                    return Change(DUPLICATE, t, nominal, nominal)
                tab.parts[prev] |= mask   # first delivery wins: the stored attrs stay
                return Change(NEW_IN_PARTITION, t, nominal, nominal, stored)
            if t < tab.first[idx]:
                tab.first[idx] = t
                tab.dirty_nodes.append(idx)
        row = len(vt)
        vt.append(t)
        if nxt >= 0:
            tab.ve.append(vt[nxt])
            tab.vp[nxt] = row
            tab.dirty_rows.append(nxt)
        else:
            tab.ve.append(INF)
            tab.latest[idx] = row
            tab.dirty_nodes.append(idx)
        tab.vp.append(prev)
        tab.vn.append(idx)
        tab.parts.append(mask)
        tab.attrs.append(attrs)
        if tomb:
            tab.tombs.add(row)
            self.deletes += 1
        prev_attrs = None
        if prev >= 0:
            tab.ve[prev] = t   # the previous version (and its edges) now ends at t
            tab.dirty_rows.append(prev)
            prev_attrs = self.row_attrs(tab, prev)
        if t < self.t_min:
            self.t_min = t
        if t > self.t_max:
            self.t_max = t
        loading = self.loading
        feats = {(kind, nid)}
        edges: set = set()
        refs = REFS[kind]
        if refs:
            for j, ref in enumerate(refs):
                new_v = attrs.get(ref.field)
                old_v = prev_attrs.get(ref.field) if prev_attrs is not None else None
                if old_v is not None:
                    edges.add((ref.target, old_v))
                if new_v is None:
                    tab.refs[j].append(-1)
                    continue
                target = self._touch(ref.target, new_v, t, feats)
                tab.refs[j].append(target)
                lst = self.tables[ref.target].rev[ref.etype]
                held = lst[target]
                if held is None:
                    lst[target] = pack_row(row)
                elif ref.etype == HAD_ACTIVITY_CODE and not loading:
                    last = last_row(held, len(held) - 8)[0]
                    if t > vt[last] or (t == vt[last] and nid > tab.names[tab.vn[last]]):
                        lst[target] = held + pack_row(row)
                    else:
                        lst[target] = self._insert_row(held, row)
                else:
                    lst[target] = held + pack_row(row)
                edges.add((ref.target, new_v))
            if kind == ACTIVITY:
                tab.ttype.append(self._code(attrs.get("type")))
                tab.tpage.append(self._code(attrs.get("page")))
                old_c = prev_attrs.get("contact_id") if prev_attrs is not None else None
                for v in (old_c, attrs.get("contact_id")):   # timelines of both contacts
                    if v is not None:
                        feats.add((CONTACT, v))
        for field, target_kind in EXTRA_REFS.get(kind, ()):
            value = attrs.get(field)
            if value is not None:
                self._touch(target_kind, value, t, feats)
        if not loading and (tomb or (prev >= 0 and prev in tab.tombs)):   # deleted, or re-created
            self._incoming(kind, idx, t, tab.ve[row], feats, edges)
        if edges:
            edges.add((kind, nid))
        if kind == ORDER:
            self._attribute(idx, feats)
        elif kind == CONTACT:
            company = tab.refs[WORKS_AT_J]
            if (prev >= 0 and company[prev] != company[row]) or (nxt >= 0 and company[nxt] != company[row]):
                self.movers.add(idx)
            held = self.tables[CONTACT].rev[PLACED_CODE][idx]
            if held:
                ovn = self.tables[ORDER].vn
                for oidx in sorted({ovn[r] for r in rows_of(held)}):
                    self._attribute(oidx, feats)
        elif kind == COMPANY:
            node = self.cnodes.get(nid)
            if node is None:
                node = self.cnodes[nid] = CNode()
            i = (bisect_right if tomb else bisect_left)(node.times, t)   # as in the row chain: the delete wins a tie
            node.times.insert(i, t)
            node.bk.insert(i, (industry_bucket(attrs), similar_bucket(attrs)))
            if loading:
                self.rings.register(nid, node, i)
            else:
                for c in self.rings.on_version(nid, node, i):
                    edges.add((COMPANY, c))
        if loading:
            return _LOADED
        if tomb and unknown:   # stored for a version that may still arrive; no read changed
            return _tuple_new(Change, (NEW, t, frozenset(), frozenset(), None))
        return _tuple_new(Change, (NEW, t, frozenset(feats), frozenset(edges), None))

    def _incoming(self, kind: str, idx: int, lo: int, hi: int, feats: set, edges: set) -> None:
        """Effects of node ``idx`` vanishing (or returning) during ``[lo, hi)``: the holders of
        edges to it valid then, and for a contact the activities that go with it (their
        timeline entries and their opportunities' edges)."""
        tables = self.tables
        for code, lists in tables[kind].rev.items():
            held = lists[idx]
            if not held:
                continue
            hk = HOLDER_OF[code][0]
            htab = tables[hk]
            vt, ve, vn, names = htab.vt, htab.ve, htab.vn, htab.names
            for h in rows_of(held):
                if vt[h] < hi and ve[h] > lo:
                    edges.add((hk, names[vn[h]]))
                    if code == HAD_ACTIVITY_CODE:
                        feats.add((hk, names[vn[h]]))
                        opp = htab.refs[1 - _ACTIVITY_CONTACT_J][h]
                        if opp >= 0:
                            edges.add((OPPORTUNITY, tables[OPPORTUNITY].names[opp]))

    def finish_load(self) -> None:
        """End a bulk load: sort the ``had_activity`` lists into timeline order."""
        key = self._tl_key
        lists = self.tables[CONTACT].rev[HAD_ACTIVITY_CODE]
        for i, held in enumerate(lists):
            if held is not None and len(held) > 8:
                lists[i] = array("q", sorted(rows_of(held), key=key)).tobytes()
        self.loading = False

    def row_attrs(self, tab: Table, row: int) -> dict:
        """The stored attributes of a version row (do not mutate).

        A new activity whose attributes are exactly ``activity_id, contact_id, type, timestamp[,
        page]`` (strings, the id and time of the row) keeps no dict: they are its columns.
        """
        attrs = tab.attrs[row]
        if attrs is not None:
            return attrs
        strings = self.strings
        out = {"activity_id": tab.names[tab.vn[row]],
               "contact_id": self.tables[CONTACT].names[tab.refs[_ACTIVITY_CONTACT_J][row]],
               "type": strings[tab.ttype[row]], "timestamp": tab.vt[row]}
        page = tab.tpage[row]
        if page:
            out["page"] = strings[page]
        return out

    def _insert_row(self, held: bytes, row: int) -> bytes:
        """``held`` with ``row`` inserted in timeline order (a late activity)."""
        key = self._tl_key
        i = bisect_right(rows_of(held), key(row), key=key)
        return held[:8 * i] + pack_row(row) + held[8 * i:]

    def _tl_key(self, row: int) -> tuple[int, str]:
        tab = self.tables[ACTIVITY]
        return tab.vt[row], tab.names[tab.vn[row]]

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

    def _touch(self, ntype: str, nid: str, t: int, feats: set) -> int:
        tab = self.tables[ntype]
        idx = tab.ids.get(nid)
        if idx is None:
            feats.add((ntype, nid))
            return tab.add(nid, t)
        if t < tab.first[idx]:
            tab.first[idx] = t
            tab.dirty_nodes.append(idx)
            feats.add((ntype, nid))
        return idx

    def company_of_contact(self, cid: Optional[str], t: int) -> Optional[str]:
        tab = self.tables[CONTACT]
        idx = tab.ids.get(cid) if cid is not None else None
        if idx is None:
            return None
        r = tab.row_at(idx, t)
        return tab.attrs[r].get("company_id") if r >= 0 else None

    def _attribute(self, oidx: int, feats: set) -> None:
        """Recompute which company each version of order ``oidx`` counts for."""
        tab = self.tables[ORDER]
        oid = tab.names[oidx]
        new = []
        for r in tab.rows(oidx):
            tv, attrs = tab.vt[r], tab.attrs[r]
            company = attrs.get("company_id") or self.company_of_contact(attrs.get("contact_id"), tv)
            if company is not None:
                new.append((company, (tv, oid, tab.ve[r], float(attrs.get("amount", 0.0)))))
        old = self.oattr.get(oidx, [])
        if old == new:
            return
        ctab = self.tables[COMPANY]
        changed = []
        for company, entry in old:
            if (company, entry) not in new:
                self.corders[ctab.ids[company]].remove(entry)
                self.ocols.pop(ctab.ids[company], None)
                feats.add((COMPANY, company))
                changed.append((ctab.ids[company], entry[0]))
        for company, entry in new:
            if (company, entry) not in old:
                cidx = ctab.ids.get(company)
                if cidx is None:   # only a contact's company: it exists already
                    cidx = ctab.add(company, entry[0])
                insort(self.corders.setdefault(cidx, []), entry)
                self.ocols.pop(cidx, None)
                feats.add((COMPANY, company))
                changed.append((cidx, entry[0]))
        self.oattr[oidx] = new
        if not self.loading:   # the careers that count the order: everyone working there at its time
            for cidx, tv in changed:
                feats.update((CONTACT, c) for c in self.staff_at(cidx, tv))

    # ================================================================== reads
    def get(self, ntype: str, nid: str, t: int) -> Optional[int]:
        """The node's int id if it exists at ``t`` (and is not deleted), else None."""
        tab = self.tables[ntype]
        idx = tab.ids.get(nid)
        if idx is None or tab.first[idx] > t:
            return None
        return idx if not self.deletes or self.alive(ntype, idx, t) else None

    def alive(self, ntype: str, idx: int, t: int) -> bool:
        """Whether an existing node is not deleted at ``t``: its valid row is no tombstone and,
        for an activity, its contact's is none either (a deleted contact's activities go with it)."""
        tab = self.tables[ntype]
        r = tab.row_at(idx, t)
        if r in tab.tombs:
            return False
        if ntype == ACTIVITY and r >= 0:
            c = tab.refs[_ACTIVITY_CONTACT_J][r]
            return c < 0 or not self.tables[CONTACT].dead(c, t)
        return True

    def attrs(self, ntype: str, nid: str, t: int) -> Optional[dict]:
        """Version attributes plus the derived lists (``timeline``, ``orders``); None if absent."""
        idx = self.get(ntype, nid, t)
        if idx is None:
            return None
        tab = self.tables[ntype]
        r = tab.row_at(idx, t)
        out = dict(self.row_attrs(tab, r)) if r >= 0 else {}
        if ntype == CONTACT:
            out["timeline"] = self.timeline(idx, t)
        elif ntype == COMPANY:
            out["orders"] = self.orders(idx, t)
        return out

    def timeline(self, cidx: int, t: int) -> list:
        """``(time, type, page)`` of the activities linked to contact ``cidx`` as of ``t``."""
        held = self.tables[CONTACT].rev[HAD_ACTIVITY_CODE][cidx]
        if not held:
            return []
        tab = self.tables[ACTIVITY]
        vt, ve, ttype, tpage, strings = tab.vt, tab.ve, tab.ttype, tab.tpage, self.strings
        return [(vt[r], strings[ttype[r]], strings[tpage[r]]) for r in held_at(held, vt, ve, t)]

    def order_rows(self, coidx: int) -> bytes:
        """``corders[coidx]`` as int64 triples (time, end, the amount's float64 bits), in time
        order; extraction gathers these for many companies at once (cached until they change)."""
        got = self.ocols.get(coidx)
        if got is None:
            entries = self.corders.get(coidx) or ()
            rows = np.array([(tv, end, 0) for tv, _, end, _ in entries], dtype=np.int64).reshape(-1, 3)
            rows[:, 2] = np.array([amount for *_, amount in entries], dtype=np.float64).view(np.int64)
            got = self.ocols[coidx] = rows.tobytes()
        return got

    def staff_at(self, coidx: int, t: int) -> list[str]:
        """Ids of the contacts whose version valid at ``t`` names company ``coidx`` (deleted
        companies and contacts included: a career keeps them, ``career.py``)."""
        held = self.tables[COMPANY].rev[WORKS_AT_CODE][coidx]
        if not held:
            return []
        ctab = self.tables[CONTACT]
        vt, ve, vn, names = ctab.vt, ctab.ve, ctab.vn, ctab.names
        return [names[vn[h]] for h in held_at(held, vt, ve, t)]

    def orders(self, coidx: int, t: int) -> list:
        entries = self.corders.get(coidx)
        if not entries:
            return []
        return [(tv, amount) for tv, _, end, amount in entries if tv <= t < end]

    def edges_at(self, ntype: str, idx: int, t: int, skip: frozenset = frozenset(),
                 span: Optional[list] = None) -> Iterator[tuple[int, str, int, int]]:
        """Every edge of node ``idx`` valid at ``t``: ``(edge type code, other type, other node, time)``;
        ``skip``: base edge types whose holders listed under the node are left out.

        ``span``: a ``[lo, hi]`` holding ``t``, narrowed (once the edges are consumed) to an
        interval around ``t`` over which the same neighbours are found (``table.held_at``); to
        ``t`` alone where that is not tracked (the derived rings, deletes).
        """
        edges = self._edges_at(ntype, idx, t, skip, span)
        if not self.deletes:
            return edges
        if span is not None:
            at_only(span, t)
        alive = self.alive
        return (e for e in edges if alive(e[1], e[2], t))

    def _edges_at(self, ntype: str, idx: int, t: int, skip: frozenset = frozenset(),
                  span: Optional[list] = None) -> Iterator[tuple[int, str, int, int]]:
        """``edges_at`` without the delete filter."""
        tables = self.tables
        tab = tables[ntype]
        r = tab.row_at(idx, t)
        if span is not None:
            row_span(tab, r, t, span)
        if r >= 0:
            for j, ref in enumerate(REFS[ntype]):
                other = tab.refs[j][r]
                if other >= 0:
                    yield (ref.etype if ref.holder_is_src else ref.etype + NB), ref.target, other, tab.vt[r]
        for base, lists in tab.rev.items():
            held = lists[idx] if base not in skip else None
            if held:
                hk, _, ref = HOLDER_OF[base]
                htab = tables[hk]
                code = base + NB if ref.holder_is_src else base
                vt, vn = htab.vt, htab.vn
                for h in held_at(held, vt, htab.ve, t, span):
                    yield code, hk, vn[h], vt[h]
        if ntype == COMPANY:
            if span is not None:
                at_only(span, t)
            ids = tab.ids
            nid = tab.names[idx]
            for k, code in enumerate(RING_CODES):
                for other, et in self.rings.peers(k, nid, t):
                    o = ids[other]
                    yield code, COMPANY, o, et
                    yield code + NB, COMPANY, o, et

    def neighbors(self, code: int, nid: str, t: int) -> list[tuple[str, int]]:
        src_type = ETYPES[code][0]
        idx = self.get(src_type, nid, t)
        if idx is None:
            return []
        base = code % NB
        if base in RING_CODES:
            out = list(self.rings.peers(RING_CODES.index(base), nid, t))
        else:
            hk, j, ref = HOLDER_OF[base]
            htab = self.tables[hk]
            if ref.holder_is_src == (code < NB):   # nid is the holder: its valid version names one
                r = htab.row_at(idx, t)
                other = htab.refs[j][r] if r >= 0 else -1
                out = [] if other < 0 else [(self.tables[ref.target].names[other], htab.vt[r])]
            else:
                held = self.tables[src_type].rev[base][idx]
                vt, ve, vn, names = htab.vt, htab.ve, htab.vn, htab.names
                out = [(names[vn[h]], vt[h]) for h in held_at(held, vt, ve, t)]
            if self.deletes:
                dst = ETYPES[code][2]
                out = [x for x in out if self.get(dst, x[0], t) is not None]
        return sorted(out, key=lambda x: (x[1], x[0]))

    def ids(self, ntype: str, t: int) -> list[str]:
        tab = self.tables[ntype]
        if self.deletes:
            alive = self.alive
            return sorted(n for i, (n, f) in enumerate(zip(tab.names, tab.first)) if f <= t and alive(ntype, i, t))
        return sorted(n for n, f in zip(tab.names, tab.first) if f <= t)

    # ============================================================ partitions
    def versions(self) -> Iterator[tuple[Record, int]]:
        """Every stored version with its partition mask (to rebuild or drop a partition)."""
        for kind, tab in self.tables.items():
            names, vn, vt = tab.names, tab.vn, tab.vt
            for r in range(len(vt)):
                yield Record(kind, names[vn[r]], vt[r], self.row_attrs(tab, r)), tab.parts[r]

    def without_partition(self, partition: int) -> "GraphState":
        bit = 1 << partition
        fresh = GraphState(*self.options)
        fresh.loading = True
        for rec, mask in self.versions():
            if mask != REPLICATED:
                mask &= ~bit
                if not mask:
                    continue
            fresh.apply(rec, mask)
        fresh.finish_load()
        return fresh
