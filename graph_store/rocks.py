"""The RocksDB graph store: durable versions, edges and source offsets in one WriteBatch.

Key layout: ``graph_store.keys``. Design: RocksDB is the source of truth; every read is served
by a write-through in-memory ``GraphState`` (the compact columnar index of ``state.py``)
rebuilt from the version keys at open (bulk: values decoded many at a time, the index built in
load mode). A random prefix scan costs tens of µs in rocksdict, so an exact 2-hop extraction
(hundreds to thousands of adjacency lists) cannot be served from disk within milliseconds
(docs/kafka-notes.md#what-was-measured); the in-memory index serves it, and the edge keys stay
on disk as the documented, scannable layout (``disk_neighbors``).

Exactly once: ``apply`` writes the new versions, their edges (both directions) and the
consumed positions in one WriteBatch. A crash leaves the store at a batch boundary with
positions matching its contents; re-delivered events are duplicates (same kind, id and
version time) and change nothing.
"""
from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from rocksdict import (
    AccessType,
    BottommostLevelCompaction,
    CompactOptions,
    DBCompressionType,
    MemtableFactory,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from leadpulse.graph_store import erase
from leadpulse.graph_store import keys as K
from leadpulse.graph_store.base import ApplyEffect, Positions
from leadpulse.graph_store.errors import GraphStoreError, StoreClosed, StoreCorrupted, StoreWriteFailed
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.reads import StateBackedStore, paused_gc
from leadpulse.graph_store.records import (
    ETYPE_CODE,
    KIND_CODE,
    KINDS,
    NB,
    REFS,
    RING_KINDS,
    TOMB,
    Record,
    decode_attrs,
    decode_many,
    encode_attrs,
)
from leadpulse.graph_store.state import DUPLICATE, NEW, NEW_IN_PARTITION, REPLICATED
from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.types import ACTIVITY, COMPANY, CONTACT, EdgeType, NodeType

logger = logging.getLogger(__name__)
FORMAT = b"2"   # 2: values are pickles (records.encode_attrs); 1: JSON, still readable
#: format 2 plus tombstone keys (keys.py): set by the first delete, so older code refuses the store
FORMAT_DELETES = b"3"
READABLE_FORMATS = (b"1", FORMAT, FORMAT_DELETES)
WRITE_BUFFER_BYTES = 64 << 20
_HOLDER = {ref.etype: (kind, ref) for kind, refs in REFS.items() for ref in refs}
#: per kind: (reference field, edge type of the key indexed from the referenced end, towards the holder)
_EDGE_KEYS = {kind: tuple((ref.field, ref.etype + NB if ref.holder_is_src else ref.etype) for ref in refs)
              for kind, refs in REFS.items()}


class RocksDBGraphStore(StateBackedStore):
    """A ``GraphStore`` persisted in one RocksDB directory.

    Args:
        path: the store directory (created if missing, unless ``read_only``).
        options: ``GraphStoreOptions`` (default ``GraphStoreOptions()``).
        read_only: open without taking the write lock (e.g. retraining next to a running
            worker): reads see the store as of opening; ``apply`` and ``drop_partition``
            raise ``GraphStoreError``. Default False.

    Example:
        >>> import tempfile
        >>> from leadpulse.schemas.events import Contact
        >>> d = tempfile.mkdtemp()
        >>> store = RocksDBGraphStore(d)
        >>> _ = store.apply([Contact(contact_id="c1", company_id="a1",
        ...                          updated_at="2026-01-01T00:00:00Z")], {("crm.contacts", 0): 1})
        >>> store.close(); store = RocksDBGraphStore(d)
        >>> store.positions(), store.node_ids("company", 2**62)
        ({('crm.contacts', 0): 1}, ['a1'])
        >>> store.close()
    """

    def __init__(self, path: str | os.PathLike, options: GraphStoreOptions | None = None, *,
                 read_only: bool = False) -> None:
        super().__init__(options)
        self.path = str(Path(path))
        self.read_only = read_only
        self._db: Optional[Rdict] = self._open()
        self._wopt = WriteOptions()
        self._wopt.sync = self.options.sync_writes
        self._partitions: set[int] = set()
        self._format = FORMAT
        if self.options.gc_threshold is not None:
            gc.set_threshold(*self.options.gc_threshold)
        with paused_gc():
            self._load()
        if self.options.gc_freeze:
            gc.freeze()

    # ------------------------------------------------------------------- open
    def _open(self) -> Rdict:
        read_only = self.read_only
        opts = Options(raw_mode=True)
        opts.create_if_missing(not read_only)
        # Write-mostly: reads are served by the in-memory index and the disk is scanned at open.
        # A vector memtable makes a put an append (sorted once, at flush, off the apply thread);
        # cheaper batch writes than the default skiplist (docs/graph_store.md#measurements-behind-the-code).
        # Prefix scans of a large unflushed memtable pay that sort per iterator (only
        # ``disk_neighbors``, a tool).
        opts.set_memtable_factory(MemtableFactory.vector())
        opts.set_allow_concurrent_memtable_write(False)
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
        if not self.options.compression:
            opts.set_compression_type(DBCompressionType.none())
        try:
            return Rdict(self.path, opts, access_type=AccessType.read_only() if read_only else AccessType.read_write())
        except Exception as exc:
            raise StoreCorrupted(f"cannot open graph store at {self.path}: {exc}. Move the directory "
                                 "aside and restart to rebuild it from the source topics.") from exc

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise StoreClosed("the graph store is closed")
        return self._db

    def _load(self) -> None:
        """Rebuild the in-memory index from the version keys (edge keys are not read).

        Bulk path: values are JSON-decoded many at a time and the index is built in load mode
        (no change sets, no ring diffs, timelines sorted once at the end).
        """
        db = self.db
        try:
            fmt = db.get(K.META + b"format")
            if fmt is not None and fmt not in READABLE_FORMATS:
                raise StoreCorrupted(f"graph store at {self.path} has format {fmt!r}, expected one of "
                                     f"{READABLE_FORMATS!r}")
            if fmt not in (FORMAT, FORMAT_DELETES) and not self.read_only:   # new, or format 1 about to get format-2 values
                db.put(K.META + b"format", FORMAT)
            self._format = FORMAT_DELETES if fmt == FORMAT_DELETES else FORMAT
            state = self._new_state()
            state.loading = True
            positions: dict[int, dict] = {}
            self._partitions = set()
            loader = _Loader(state)
            for key, value in db.items(from_key=K.REPL_VERSION):
                if not key.startswith(K.REPL_VERSION):
                    break
                nid, t = K.parse_version(key, 2)
                loader.add(COMPANY, nid, t, REPLICATED, value)
            for key in db.keys(from_key=K.REPL_TOMB):
                if not key.startswith(K.REPL_TOMB):
                    break
                nid, t = K.parse_version(key, 2)
                loader.add(COMPANY, nid, t, REPLICATED, None)
            loader.flush()
            head = _first_key(db, b"P")
            while head is not None and head[:1] == b"P":
                p = K.parse_partition(head)
                ohead, vhead, dhead = K.part(p) + b"O", K.part(p) + b"V", K.part(p) + b"D"
                bit = 1 << p
                for key, value in db.items(from_key=ohead):
                    if not key.startswith(ohead):
                        break
                    topic, pos = K.read_ident(key, 6)
                    tp = int.from_bytes(key[pos:pos + 4], "big")
                    positions.setdefault(p, {})[(topic, tp)] = K.decode_offset(value)
                for key, value in db.items(from_key=vhead):
                    if not key.startswith(vhead):
                        break
                    nid, t = K.parse_version(key, 7)
                    loader.add(KINDS[key[6]], nid, t, bit, value)
                for key in db.keys(from_key=dhead):
                    if not key.startswith(dhead):
                        break
                    nid, t = K.parse_version(key, 7)
                    loader.add(KINDS[key[6]], nid, t, bit, None)
                loader.flush()
                self._partitions.add(p)
                head = _first_key(db, K.part(p + 1))
            state.finish_load()
        except GraphStoreError:
            raise
        except Exception as exc:
            raise StoreCorrupted(f"cannot read graph store at {self.path}: {exc}. Move the directory "
                                 "aside and restart to rebuild it from the source topics.") from exc
        self._state = state
        self._positions = positions
        logger.info("graph store %s loaded: %d partitions", self.path, len(self._partitions))

    # ----------------------------------------------------------------- writes
    def apply(self, events: Sequence[InputEvent], positions: Positions | None = None,
              partition: int = 0) -> list[ApplyEffect]:
        db = self._writable()
        bit = 1 << partition
        wb = WriteBatch(raw_mode=True)
        changes = []
        try:
            with paused_gc():
                changes, tombs = self._apply_batch(wb, self._records(events), partition, bit)
            if tombs and self._format != FORMAT_DELETES:
                wb.put(K.META + b"format", FORMAT_DELETES)
            if positions:
                for (topic, tp), off in positions.items():
                    wb.put(K.offset_key(partition, topic, tp), K.encode_offset(off))
            if not wb.is_empty():
                db.write(wb, self._wopt)
            if tombs:
                self._format = FORMAT_DELETES
        except Exception as exc:
            logger.error("graph store batch failed, reloading from disk: %s", exc)
            with paused_gc():
                self._load()
            raise StoreWriteFailed(f"batch of {len(events)} events not applied: {exc}") from exc
        self._partitions.add(partition)
        if positions:
            self._positions.setdefault(partition, {}).update(positions)
        return self._effects(events, changes)

    def _apply_batch(self, wb: WriteBatch, records: list[Record], partition: int, bit: int) -> tuple[list, int]:
        """Apply to the index, then put each new version and its edge keys into ``wb``; also
        returns how many tombstones were put."""
        changes = self.state.apply_batch(records, bit)
        tombs = 0
        put = wb.put
        keys = K.BatchKeys(partition)
        vheads, eheads, ident, pack, company_key = keys.vheads, keys.eheads, K.ident_raw, K.pack_t8, keys.company
        for rec, ch in zip(records, changes):
            status = ch[0]
            if status == DUPLICATE:
                continue
            kind, nid, t, attrs = rec
            if attrs is TOMB:   # no edge keys: a tombstone asserts no edge
                if kind != COMPANY or status == NEW:
                    put(K.tomb_key(None if kind == COMPANY else partition, KIND_CODE[kind], nid, t), b"")
                    tombs += 1
                continue
            if kind == COMPANY:
                if status == NEW:
                    put(company_key(nid, t), encode_attrs(attrs))
                continue
            if status == NEW_IN_PARTITION:
                attrs = ch.attrs
            raw, t8 = ident(nid.encode()), pack(t)
            put(vheads[KIND_CODE[kind]] + raw + t8, encode_attrs(attrs))
            for field, code in _EDGE_KEYS[kind]:
                other = attrs.get(field)
                if other is not None:
                    put(eheads[code] + ident(other.encode()) + t8 + raw, b"")
        return changes, tombs

    def _writable(self) -> Rdict:
        if self.read_only:
            raise GraphStoreError(f"graph store at {self.path} is open read-only")
        return self.db

    def drop_partition(self, partition: int) -> None:
        self._writable()
        wb = WriteBatch(raw_mode=True)
        wb.delete_range(K.part(partition), K.part(partition + 1))
        try:
            self.db.write(wb, self._wopt)
        except Exception as exc:
            raise StoreWriteFailed(f"cannot drop partition {partition}: {exc}") from exc
        with paused_gc():
            self._state = self.state.without_partition(partition)
        self._positions.pop(partition, None)
        self._partitions.discard(partition)

    def erase_contact(self, contact_id: str, as_of: int, hops: int = 2) -> set[str]:
        """See ``GraphStore.erase_contact``. One WriteBatch deletes the person's keys in every
        partition and rewrites the opportunity versions that named it; then ``purge``."""
        db = self._writable()
        with paused_gc():
            plan = erase.plan(self.state, contact_id)
            if plan is None:
                return set()
            leads = erase.affected_contacts(self.state, plan, as_of, hops)
            wb = WriteBatch(raw_mode=True)
            for rec, mask in erase.removed(self.state, plan):
                for key in _record_keys(rec, mask):
                    wb.delete(key)
            for rec, mask in erase.rewritten(self.state, plan):
                value = encode_attrs(rec.attrs)
                for p in _partitions_of(mask):
                    wb.put(K.version_key(p, KIND_CODE[rec.kind], rec.id, rec.time), value)
            try:
                db.write(wb, self._wopt)
            except Exception as exc:
                raise StoreWriteFailed(f"cannot erase contact {contact_id!r}: {exc}") from exc
            try:
                self._state = erase.without(self.state, plan)
            except Exception:   # the disk is erased already: the index must follow it
                self._load()
                raise
        self.purge()
        return leads

    def purge(self) -> None:
        """Rewrite the store's files so deleted keys are gone from disk, not only from reads.

        A delete is a tombstone beside the old value until a compaction merges them at the
        bottom level, so: flush the memtable (the WAL that logged the deletes becomes obsolete
        and is removed), compact the whole key range through the bottom level (every file
        rewritten without the deleted values and their tombstones), then reopen: RocksDB starts
        a new MANIFEST, and the old one lists the smallest and largest key of every file it
        ever had, which can be a deleted key. Costs a full rewrite of the store (measured in
        docs/graph_store.md, "Erasure"). ``erase_contact`` calls it; call it again if it failed.
        """
        db = self._writable()
        try:
            db.flush()
            db.flush_wal()
            compact = CompactOptions()
            compact.set_bottommost_level_compaction(BottommostLevelCompaction.force_optimized())
            db.compact_range(None, None, compact)
            db.close()
        except Exception as exc:
            raise StoreWriteFailed(f"graph store at {self.path}: the physical purge failed ({exc}); the "
                                   "erased keys are deleted but may linger on disk: call purge() again") from exc
        self._db = None
        self._db = self._open()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._state = None

    # ----------------------------------------------------- on-disk read path
    def _disk_versions(self, kind: str, nid: str, as_of: int) -> list[tuple[int, Optional[bytes]]]:
        """``(time, raw attrs)`` of the versions with time <= as_of, and ``(time, None)`` of the
        tombstones, in chain order (a tombstone after the version of its time); one prefix scan
        per partition and key space."""
        out: dict = {}
        code = KIND_CODE[kind]
        parts = [None] if kind == COMPANY else sorted(self._partitions)
        for p in parts:
            for prefix, tomb in ((K.REPL_VERSION + K.ident(nid) if p is None else K.version_prefix(p, code, nid), False),
                                 (K.tomb_prefix(p, code, nid), True)):
                for key, value in self.db.items(from_key=prefix):
                    if not key.startswith(prefix):
                        break
                    t = K.un_t8(key[len(prefix):len(prefix) + 8])
                    if t > as_of:
                        break
                    out.setdefault((t, tomb), None if tomb else value)
        return [(t, value) for (t, _), value in sorted(out.items())]

    def _disk_alive(self, ntype: NodeType, nid: str, as_of: int) -> bool:
        """``GraphState.alive`` from the version and tombstone keys (of a node that exists)."""
        versions = self._disk_versions(ntype, nid, as_of)
        if versions and versions[-1][1] is None:
            return False
        if ntype == ACTIVITY and versions:
            return self._disk_alive(CONTACT, decode_attrs(versions[-1][1])["contact_id"], as_of)
        return True

    def disk_neighbors(self, etype: EdgeType, node_id: str, as_of: int) -> list[tuple[str, int]]:
        """``neighbors`` answered from the edge keys by prefix scans (slow; for checks and tools)."""
        code = ETYPE_CODE[tuple(etype)]
        if code % NB in RING_KINDS:
            raise GraphStoreError("derived company edges are not stored; use neighbors()")
        kind, ref = _HOLDER[code % NB]
        if not self._disk_alive(etype[0], node_id, as_of):
            return []
        if ref.holder_is_src == (code < NB):   # node_id is the holder: its latest version names it
            versions = self._disk_versions(kind, node_id, as_of)
            other = decode_attrs(versions[-1][1]).get(ref.field) if versions and versions[-1][1] else None
            if other is None or not self._disk_alive(ref.target, other, as_of):
                return []
            return [(other, versions[-1][0])]
        found = set()
        for p in self._partitions:
            prefix = K.edge_prefix(p, code, node_id)
            for key in self.db.keys(from_key=prefix):
                if not key.startswith(prefix):
                    break
                t = K.un_t8(key[len(prefix):len(prefix) + 8])
                if t > as_of:
                    break
                found.add((K.read_ident(key, len(prefix) + 8)[0], t))
        out = []
        for other, t in found:
            versions = self._disk_versions(kind, other, as_of)
            if versions and versions[-1][0] == t and versions[-1][1] is not None and self._disk_alive(kind, other, as_of):
                out.append((other, t))
        return sorted(out, key=lambda x: (x[1], x[0]))




def _partitions_of(mask: int) -> list[int]:
    """The store partitions whose bits are set in an account version's partition mask."""
    return [p for p in range(mask.bit_length()) if mask >> p & 1]


def _record_keys(rec: Record, mask: int) -> list[bytes]:
    """The keys ``apply`` wrote for an account record in the partitions of ``mask``: its version
    and the edge keys it asserts, or its tombstone."""
    kind, nid, t, attrs = rec
    code = KIND_CODE[kind]
    out = []
    for p in _partitions_of(mask):
        if attrs is TOMB:
            out.append(K.tomb_key(p, code, nid, t))
            continue
        out.append(K.version_key(p, code, nid, t))
        for field, etype in _EDGE_KEYS[kind]:
            other = attrs.get(field)
            if other is not None:
                out.append(K.edge_key(p, etype, other, t, nid))
    return out


def _first_key(db: Rdict, start: bytes) -> Optional[bytes]:
    for key in db.keys(from_key=start):
        return key
    return None


class _Loader:
    """Buffers version keys read at open and applies them with one JSON parse per chunk."""
    CHUNK = 20_000

    def __init__(self, state) -> None:
        self.state = state
        self.meta: list[tuple[str, str, int, int]] = []
        self.raws: list[bytes] = []

    def add(self, kind: str, nid: str, t: int, mask: int, raw: Optional[bytes]) -> None:
        """Buffer a version (``raw``: its stored attrs) or a tombstone (``raw`` None)."""
        if self.meta and self.meta[0][3] != mask:
            self.flush()
        self.meta.append((kind, nid, t, mask))
        self.raws.append(raw)
        if len(self.raws) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        """Apply the buffered versions (one partition, or the replicated companies, per flush)."""
        if self.meta:
            mask = self.meta[0][3]
            raws = self.raws
            if None in raws:   # tombstones: only the versions have values to decode
                kept = iter(decode_many([r for r in raws if r is not None]))
                decoded = [TOMB if r is None else next(kept) for r in raws]
            else:
                decoded = decode_many(raws)
            self.state.apply_batch([Record(kind, nid, t, attrs) for (kind, nid, t, _), attrs
                                    in zip(self.meta, decoded)], mask)
        self.meta.clear()
        self.raws.clear()
