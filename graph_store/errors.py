"""The graph store's exceptions: one small hierarchy, rocksdict errors wrapped at the boundary."""
from __future__ import annotations


class GraphStoreError(Exception):
    """Base class of every error raised by ``graph_store``."""


class StoreClosed(GraphStoreError):
    """The store was used after ``close()``."""


class StoreCorrupted(GraphStoreError):
    """The on-disk store cannot be read back.

    What to do: stop the worker, move the store directory aside and restart; the worker
    rebuilds the partition from the source topics (offsets live in the same store, so a
    fresh store starts from the beginning and replays exactly once).
    """


class StoreWriteFailed(GraphStoreError):
    """An atomic batch could not be written; nothing of it was applied."""
