"""RocksDB key layout of the graph store (built here and only here).

Every integer is big-endian so byte order equals numeric order; times are int micros shifted
by 2**63 (``t8``) so negative times sort too. Ids are ``id``: a u16 length then UTF-8 bytes
(unambiguous for any id). ``p4`` is the store partition (u32).

=========================================================  ==============================
key                                                        value
=========================================================  ==============================
``M`` name                                                 meta (``format`` -> b"2", or b"3"
                                                           once it holds a tombstone)
``R`` ``D`` id(company) t8(delete time)                    b"" (company tombstone);
                                                           replicated: no partition
``R`` ``V`` id(company) t8(version time)                   company version attrs (attrs);
                                                           replicated: no partition
``P`` p4 ``D`` kind(u8) id t8(delete time)                 b"" (account tombstone)
``P`` p4 ``V`` kind(u8) id t8(version time)                account version attrs (attrs)
``P`` p4 ``E`` etype(u8) id(X) t8(edge time) id(holder)  b"" (edge X -> holder, asserted
                                                           by the holder's version)
``P`` p4 ``O`` id(topic) u32(source partition)             next offset to consume (u64)
=========================================================  ==============================

``kind`` indexes ``records.KINDS``; ``etype`` indexes ``records.ETYPES`` (base types 0..6 and
their reverses 7..13). Every edge is asserted by one version of its *holder* (the entity whose
field names the other end, ``records.REFS``): the edge time is that version's time and the edge
lasts until the holder's next version. Each direction of "neighbours of X along etype as of t"
is one prefix scan:

* X is the holder: scan ``P p4 V kind id(X)`` (its versions, time ordered) up to t; the last
  one names the neighbour in its reference field.
* X is the referenced end: scan ``P p4 E etype id(X)`` up to the first time > t, keeping each
  holder's assertion that is not superseded by a later holder version <= t.

So one edge costs one index key, written with the version in the same WriteBatch and never
rewritten.

A delete (``schemas.events.Delete``) is a *tombstone* key beside the version keys: ``D`` instead
of ``V``, the same kind, id and time, an empty value and no edge keys. It lives in its own key
space because a version and a delete may share a time (the delete wins the tie, so both must
be kept). The layout is additive: a store without deletes is byte for byte what it was, and
stays format 2. The first tombstone sets the format to 3 in its WriteBatch, so code from before
deletes (which reads formats 1 and 2 and would not see the ``D`` keys) refuses the store instead
of resurrecting deleted entities. Derived company edges (``industry_peer``, ``similar_to``) are a function of the
replicated company versions and are not stored.

(attrs) is ``records.encode_attrs``: a pickle (protocol 5) of the record's attribute dict in
format 2; format-1 stores hold compact UTF-8 JSON objects, still read (``records.decode_attrs``
tells them apart by the first byte). ``BatchKeys`` builds the same keys for bulk writes.
"""
from __future__ import annotations

import struct

SHIFT = 1 << 63
META = b"M"
REPL_VERSION = b"RV"
REPL_TOMB = b"RD"
_T = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def t8(t: int) -> bytes:
    return _T.pack(t + SHIFT)


def un_t8(raw: bytes) -> int:
    return _T.unpack(raw)[0] - SHIFT


def ident(text: str) -> bytes:
    raw = text.encode()
    return _U16.pack(len(raw)) + raw


def read_ident(buf: bytes, pos: int) -> tuple[str, int]:
    n = _U16.unpack_from(buf, pos)[0]
    end = pos + 2 + n
    return buf[pos + 2:end].decode(), end


def part(p: int) -> bytes:
    return b"P" + _U32.pack(p)


_KIND = [bytes((k,)) for k in range(256)]


def version_prefix(p: int, kind: int, nid: str) -> bytes:
    raw = nid.encode()
    return b"P" + _U32.pack(p) + b"V" + _KIND[kind] + _U16.pack(len(raw)) + raw


def version_key(p: int, kind: int, nid: str, t: int) -> bytes:
    raw = nid.encode()
    return b"P" + _U32.pack(p) + b"V" + _KIND[kind] + _U16.pack(len(raw)) + raw + _T.pack(t + SHIFT)


def company_key(nid: str, t: int) -> bytes:
    return REPL_VERSION + ident(nid) + t8(t)


def tomb_prefix(p: int, kind: int, nid: str) -> bytes:
    """``P p4 D kind id``; ``p`` None: the replicated company tombstones ``R D id``."""
    return REPL_TOMB + ident(nid) if p is None else part(p) + b"D" + _KIND[kind] + ident(nid)


def tomb_key(p: int, kind: int, nid: str, t: int) -> bytes:
    """A tombstone: ``P p4 D kind id t8``, or ``R D id t8`` when ``p`` is None (a company).

    Example:
        >>> parse_version(tomb_key(3, 1, "c1", 5), 7), parse_version(tomb_key(None, 0, "a1", -5), 2)
        (('c1', 5), ('a1', -5))
    """
    return tomb_prefix(p, kind, nid) + t8(t)


def edge_prefix(p: int, etype: int, src: str) -> bytes:
    raw = src.encode()
    return b"P" + _U32.pack(p) + b"E" + _KIND[etype] + _U16.pack(len(raw)) + raw


def edge_key(p: int, etype: int, src: str, t: int, dst: str) -> bytes:
    raw, other = src.encode(), dst.encode()
    return (b"P" + _U32.pack(p) + b"E" + _KIND[etype] + _U16.pack(len(raw)) + raw + _T.pack(t + SHIFT)
            + _U16.pack(len(other)) + other)


_LEN = [_U16.pack(n) for n in range(4096)]


def ident_raw(raw: bytes) -> bytes:
    """``ident`` of an already encoded id."""
    n = len(raw)
    return (_LEN[n] if n < 4096 else _U16.pack(n)) + raw


def pack_t8(t: int) -> bytes:
    return _T.pack(t + SHIFT)


class BatchKeys:
    """The version and edge keys of one partition, built with fewer calls (bulk apply).

    Same bytes as ``version_key`` / ``edge_key`` / ``company_key``; the heads ``P p4 V kind`` and
    ``P p4 E etype`` are built once per partition.

    Example:
        >>> b = BatchKeys(3)
        >>> b.version(1, "c1", 5) == version_key(3, 1, "c1", 5)
        True
        >>> b.edge(8, "a1", 5, "c1") == edge_key(3, 8, "a1", 5, "c1")
        True
        >>> b.company("a1", -5) == company_key("a1", -5)
        True
    """
    __slots__ = ("vheads", "eheads")

    def __init__(self, p: int) -> None:
        head = part(p)
        self.vheads = [head + b"V" + _KIND[k] for k in range(16)]
        self.eheads = [head + b"E" + _KIND[k] for k in range(32)]

    def version(self, kind: int, nid: str, t: int) -> bytes:
        return self.vheads[kind] + ident_raw(nid.encode()) + _T.pack(t + SHIFT)

    def edge(self, etype: int, src: str, t: int, dst: str) -> bytes:
        return self.eheads[etype] + ident_raw(src.encode()) + _T.pack(t + SHIFT) + ident_raw(dst.encode())

    @staticmethod
    def company(nid: str, t: int) -> bytes:
        return REPL_VERSION + ident_raw(nid.encode()) + _T.pack(t + SHIFT)


def parse_version(key: bytes, pos: int) -> tuple[str, int]:
    """``(id, time)`` of a version key whose ``id`` starts at ``pos`` (7 for ``P``, 2 for ``RV``)."""
    n = _U16.unpack_from(key, pos)[0]
    end = pos + 2 + n
    return key[pos + 2:end].decode(), _T.unpack_from(key, end)[0] - SHIFT


def offset_key(p: int, topic: str, source_partition: int) -> bytes:
    return b"P" + _U32.pack(p) + b"O" + ident(topic) + _U32.pack(source_partition)


def encode_offset(offset: int) -> bytes:
    return _T.pack(offset)


def decode_offset(raw: bytes) -> int:
    return _T.unpack(raw)[0]


def parse_partition(key: bytes) -> int:
    return _U32.unpack_from(key, 1)[0]


def next_prefix(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    raw = bytearray(prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    raw[-1] += 1
    return bytes(raw)
