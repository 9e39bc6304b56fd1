"""The in-memory twin of the RocksDB store: same interface, same semantics, no durability.

Use it in tests and notebooks. ``apply`` is atomic only in the sense that positions are
recorded after the batch; nothing survives the process.
"""
from __future__ import annotations

from typing import Sequence

from leadpulse.graph_store import erase
from leadpulse.graph_store.base import ApplyEffect, Positions
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.reads import StateBackedStore, paused_gc
from leadpulse.schemas.events import InputEvent


class MemoryGraphStore(StateBackedStore):
    """A ``GraphStore`` held in a ``GraphState`` only.

    Example:
        >>> from leadpulse.schemas.events import Contact
        >>> store = MemoryGraphStore()
        >>> ev = Contact(contact_id="c1", company_id="a1", updated_at="2026-01-01T00:00:00Z")
        >>> [e.changed for e in store.apply([ev, ev], {("crm.contacts", 0): 2})]
        [True, False]
        >>> store.positions()
        {('crm.contacts', 0): 2}
    """

    def __init__(self, options: GraphStoreOptions | None = None) -> None:
        super().__init__(options)

    def apply(self, events: Sequence[InputEvent], positions: Positions | None = None,
              partition: int = 0) -> list[ApplyEffect]:
        state = self.state
        bit = 1 << partition
        with paused_gc():
            changes = state.apply_batch(self._records(events), bit)
        if positions:
            self._positions.setdefault(partition, {}).update(positions)
        return self._effects(events, changes)

    def drop_partition(self, partition: int) -> None:
        with paused_gc():
            self._state = self.state.without_partition(partition)
        self._positions.pop(partition, None)

    def erase_contact(self, contact_id: str, as_of: int, hops: int = 2) -> set[str]:
        with paused_gc():
            plan = erase.plan(self.state, contact_id)
            if plan is None:
                return set()
            leads = erase.affected_contacts(self.state, plan, as_of, hops)
            self._state = erase.without(self.state, plan)
        return leads

    def close(self) -> None:
        self._state = None
