"""The temporal heterograph of the CRM (docs/graph_store.md).

``RocksDBGraphStore`` (durable) and ``MemoryGraphStore`` (twin) implement ``GraphStore``.
"""
from graph_store.base import ApplyEffect, GraphStore, Positions, Subgraph
from graph_store.errors import GraphStoreError, StoreClosed, StoreCorrupted, StoreWriteFailed
from graph_store.memory import MemoryGraphStore
from graph_store.options import GraphStoreOptions
from graph_store.rocks import RocksDBGraphStore

__all__ = [
    "ApplyEffect", "GraphStore", "Positions", "Subgraph",
    "GraphStoreError", "StoreClosed", "StoreCorrupted", "StoreWriteFailed",
    "MemoryGraphStore", "GraphStoreOptions", "RocksDBGraphStore",
]
