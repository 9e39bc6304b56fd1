"""The temporal heterograph of the CRM (docs/graph_store.md).

``RocksDBGraphStore`` (durable) and ``MemoryGraphStore`` (twin) implement ``GraphStore``.
"""
from leadpulse.graph_store.base import ApplyEffect, GraphStore, Positions, Subgraph
from leadpulse.graph_store.errors import GraphStoreError, StoreClosed, StoreCorrupted, StoreWriteFailed
from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.rocks import RocksDBGraphStore

__all__ = [
    "ApplyEffect", "GraphStore", "Positions", "Subgraph",
    "GraphStoreError", "StoreClosed", "StoreCorrupted", "StoreWriteFailed",
    "MemoryGraphStore", "GraphStoreOptions", "RocksDBGraphStore",
]
