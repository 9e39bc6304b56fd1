"""Options of the graph store (a frozen dataclass; only ``stream`` builds it from the environment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class GraphStoreOptions:
    """How derived edges are built and how RocksDB is opened.

    Args:
        industry_k: ring degree of ``industry_peer`` (K/2 predecessors + K/2 successors
            among companies of the same industry). Default 8.
        similar_k: ring degree of ``similar_to`` (same MinHash bucket of the tech stack).
            Default 4.
        ring_breakpoints: at most this many ring evaluations per company event when a late
            company version is applied; past it ``affected_leads`` falls back to every
            company that was ever in the bucket (a safe over-approximation). Default 32.
        sync_writes: fsync the RocksDB WAL on every batch (durable across power loss, not
            only process crashes). Default False.
        gc_freeze: call ``gc.freeze()`` after the RocksDB store has loaded its index, so
            Python's collector never walks the loaded graph again (it holds millions of
            objects and no reference cycles). Process-wide, like every GC setting. Default True.
        gc_threshold: ``gc.set_threshold`` when the RocksDB store opens (None: the interpreter's).
            What the store adds after opening is not frozen, and while it grows the
            interpreter's thresholds (700, 10, 10) walk all of it again in a full collection
            each time it grew by a quarter: in one in-process run of the large world's account
            stage, 23 full collections took 7-8 s, none at (50,000, 20, 100)
            (docs/graph_store.md#measurements-behind-the-code). Reference cycles are still
            collected, later. Default (50_000, 20, 100).
        compression: RocksDB's snappy block compression of the store files. False writes them
            uncompressed: larger on disk, and a byte scan of the files can then verify an
            erasure, which snappy makes vacuous (docs/graph_store.md, "Erasure"). Default True.

    Example:
        >>> GraphStoreOptions(industry_k=4).similar_k
        4
    """
    industry_k: int = 8
    similar_k: int = 4
    ring_breakpoints: int = 32
    sync_writes: bool = False
    gc_freeze: bool = True
    gc_threshold: Optional[tuple[int, int, int]] = (50_000, 20, 100)
    compression: bool = True

    def __post_init__(self) -> None:
        for name in ("industry_k", "similar_k"):
            value = getattr(self, name)
            if value < 2 or value % 2:
                raise ValueError(f"{name} must be an even number >= 2, got {value}")
