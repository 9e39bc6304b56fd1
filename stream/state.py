"""Small durable key-value state of the stream layer, with source offsets in the same write.

The router's contact directory and held events, and the score book of last published scores,
each live in their own RocksDB (rocksdict) directory. Every ``commit`` is one WriteBatch that
also records the consumed (topic, partition) -> next offset, the quix-streams recipe for
exactly-once state: after a crash the state and the offsets it reflects agree.

Key layout (UTF-8 strings; ``\\x00`` separates parts so prefixes never collide):
    ``o\\x00<topic>\\x00<partition>``  -> next offset to consume (JSON int)
    ``<namespace>\\x00<key...>``       -> JSON value owned by the caller
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import orjson
from rocksdict import BottommostLevelCompaction, CompactOptions, Options, Rdict, WriteBatch

logger = logging.getLogger(__name__)
SEP = "\x00"
_ABSENT = object()
CACHE_ENTRIES = 50_000
#: json.dumps' treatment of int keys (written as strings); the output is otherwise the same bytes
#: as ``json.dumps(value, separators=(",", ":"))`` for JSON-plain values, 10-16 times faster
#: (a score-book entry: 20 -> 1.2 µs; decoding 4 times faster)
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_DUMP_OPTIONS)


_loads = orjson.loads


class StateError(RuntimeError):
    """The stream state store failed; the message says what to do."""


class KVState:
    """A RocksDB-backed map of JSON values with atomic commits of data and offsets.

    ``get`` answers from a bounded LRU cache of decoded values (absent keys included), which
    ``commit`` keeps current: the account stage reads the last score of every lead it rescores,
    and decoding those JSON entries was a visible share of its time
    (docs/stream.md#measurements-behind-the-code). The cache keeps the objects themselves, not
    their JSON round trip: callers pass JSON-plain
    values (dicts with str keys, lists, str, numbers, bool, None; numbers finite: orjson, which
    encodes them, writes a NaN as null) and treat what ``get`` returns
    and what they gave ``commit`` as immutable (they build new dicts). One process writes a
    directory (RocksDB locks it), so the cache never goes stale.

    Args:
        path: directory of the database (created if missing).
        cache_entries: most decoded values kept (0: no cache). Default 50,000.
    """

    def __init__(self, path: Path | str, cache_entries: int = CACHE_ENTRIES):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_entries = cache_entries
        self._db = self._open()

    def _open(self) -> Rdict:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        try:
            return Rdict(str(self.path), opts)
        except Exception as exc:  # rocksdict raises bare Exceptions
            raise StateError(f"cannot open stream state at {self.path}: {exc}. "
                             "If it is corrupted, delete the directory: the worker rebuilds it "
                             "from the input topics.") from exc

    @staticmethod
    def key(*parts: str) -> bytes:
        return SEP.join(parts).encode()

    def get(self, *parts: str) -> Optional[Any]:
        key = self.key(*parts)
        cache = self._cache
        value = cache.get(key, _ABSENT)
        if value is not _ABSENT:
            cache.move_to_end(key)
            return value
        raw = self._db.get(key)
        value = None if raw is None else _loads(raw)
        self._remember(key, value)
        return value

    def get_many(self, keys: Sequence[tuple[str, ...]]) -> list[Optional[Any]]:
        """``[get(*k) for k in keys]``, the keys the cache lacks read in one RocksDB multi-get."""
        cache = self._cache
        raw_keys = [self.key(*parts) for parts in keys]
        out = [cache.get(k, _ABSENT) for k in raw_keys]
        missing = [i for i, v in enumerate(out) if v is _ABSENT]
        for k, v in zip(raw_keys, out):
            if v is not _ABSENT:
                cache.move_to_end(k)
        if missing:
            found = self._db.get([raw_keys[i] for i in missing])
            for i, raw in zip(missing, found):
                out[i] = None if raw is None else _loads(raw)
                self._remember(raw_keys[i], out[i])
        return out

    def _remember(self, key: bytes, value: Any) -> None:
        if self._cache_entries <= 0:
            return
        cache = self._cache
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._cache_entries:
            cache.popitem(last=False)

    def scan(self, *prefix: str, start: str = "", wrap: bool = False) -> Iterator[tuple[list[str], Any]]:
        """Items whose key starts with ``prefix`` parts, in key order.

        Args:
            start: begin after this key suffix (exclusive), e.g. a cursor. Default: the start.
            wrap: after the last item, continue from the first up to ``start``. Default False.
        """
        base = self.key(*prefix) + SEP.encode()
        yield from self._scan(base, len(prefix), base + start.encode() + (b"\x00" if start else b""), None)
        if wrap and start:
            yield from self._scan(base, len(prefix), base, base + start.encode() + b"\x00")

    def _scan(self, base: bytes, depth: int, seek: bytes, stop: Optional[bytes]) -> Iterator:
        it = self._db.iter()
        it.seek(seek)
        while it.valid():
            k = it.key()
            if not k.startswith(base) or (stop is not None and k >= stop):
                break
            yield k.decode().split(SEP)[depth:], _loads(it.value())
            it.next()

    def positions(self) -> dict[tuple[str, int], int]:
        return {(topic, int(part)): int(v) for (topic, part), v in self.scan("o")}

    def commit(self, puts: Mapping[tuple[str, ...], Any] = {},
               deletes: tuple[tuple[str, ...], ...] | list = (),
               positions: Mapping[tuple[str, int], int] = {}) -> None:
        """Write ``puts``, ``deletes`` and ``positions`` in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        for parts in deletes:
            batch.delete(self.key(*parts))
        for parts, value in puts.items():
            batch.put(self.key(*parts), _dumps(value))
        for (topic, partition), offset in positions.items():
            batch.put(self.key("o", topic, str(partition)), str(int(offset)).encode())
        try:
            self._db.write(batch)
        except Exception as exc:
            self._cache.clear()   # the write may or may not have landed: read it back
            raise StateError(f"write to {self.path} failed: {exc}") from exc
        for parts in deletes:
            self._remember(self.key(*parts), None)
        for parts, value in puts.items():
            self._remember(self.key(*parts), value)

    def purge(self) -> None:
        """Rewrite the files so deleted keys are gone from disk, not only from reads (an
        erasure): flush the memtable, then compact every key range. Costs a rewrite of the
        directory; erasures are rare."""
        self._cache.clear()
        try:
            self._db.flush()
            self._db.flush_wal()
            compact = CompactOptions()
            compact.set_bottommost_level_compaction(BottommostLevelCompaction.force_optimized())
            self._db.compact_range(None, None, compact)
            # reopened, RocksDB starts a new MANIFEST: the old one names the boundary keys of
            # every file it had, which can be a deleted key
            self._db.close()
            self._db = self._open()
        except Exception as exc:
            raise StateError(f"purging {self.path} failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()
