"""Stage 1: re-key validated input events by account (company_id).

Activities and orders are keyed by contact and carry no company, so the router keeps a
directory contact -> company for the contacts of its input partitions. Input topics are
co-partitioned by contact id (contacts, activities, orders share the key), so the worker that
owns partition p of crm.activities also owns partition p of crm.contacts and therefore knows
every contact whose activities it sees. An activity or order for a contact not seen yet is
held (durably) and forwarded when the contact arrives; the graph applies it at its own event
time, so holding changes when it is applied, never what the graph says as of any time. A held
event whose contact did not arrive within a limit of wall-clock time becomes a dead letter
("contact never arrived", ``Router.expire``; docs/stream.md, "Held events").

State (``stream.state.KVState``):
    ``d\\x00<contact_id>``                       -> [company_id, version time micros]
    ``h\\x00<contact_id>\\x00<topic>:<partition>:<offset>`` -> held event (wire JSON), contract topic,
                                                    input record time, ``held_at`` (epoch seconds)
    ``t\\x00<held_at micros>\\x00<contact_id>\\x00<topic>:<partition>:<offset>`` -> null: the held
                                                    events in the order they were held, so an
                                                    expiry reads only what is due
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Sequence

from leadpulse.schemas.events import Activity, Company, Contact, DeadLetter, InputEvent, Opportunity, Order
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.tables import event_json, format_time
from leadpulse.schemas.timeutil import to_micros
from leadpulse.stream.ingest import RawRecord, dead_letter
from leadpulse.stream.state import KVState

#: reason of a held event dead-lettered because its contact did not arrive in time (the
#: ``reason`` label of ``leadpulse_events_rejected_total``)
NEVER_ARRIVED = "contact never arrived"
_ABSENT = object()


@dataclass(frozen=True)
class Forward:
    """An event bound for the account topic.

    Args:
        account: the company_id that owns the event (the message key downstream).
        contract_topic: the default input topic name of its contract.
        event: the validated event.
        produced_at: when the input record was written to Kafka (epoch seconds), carried so
            the account stage can measure input→publish latency across both stages.
    """
    account: str
    contract_topic: str
    event: InputEvent
    produced_at: Optional[float] = None

    def wire(self) -> bytes:
        return _wire(self.contract_topic, json.loads(event_json(self.event)), self.produced_at)


def _wire(topic: str, event: dict, produced_at: Optional[float]) -> bytes:
    data = {"topic": topic, "event": event}
    if produced_at is not None:
        data["ts"] = produced_at
    return json.dumps(data, separators=(",", ":")).encode()


def decode_forward(raw: bytes) -> tuple[str, InputEvent, Optional[float]]:
    """Inverse of ``Forward.wire``: (contract topic, event, input record time).

    The account topic carries only events we validated, so a parse error here means a foreign
    producer wrote to our internal topic.
    """
    data = json.loads(raw)
    event = parse_record(data["topic"], data["event"])
    if isinstance(event, ParseError):
        raise ValueError(f"invalid account-topic record: {event}")
    return data["topic"], event, data.get("ts")


def forward_kind(raw: bytes) -> Optional[str]:
    """The contract topic of an account-topic record, read without parsing the event."""
    head = raw[:64]
    start = head.find(b'"topic":"')
    if start < 0:
        return None
    start += 9
    end = head.find(b'"', start)
    return head[start:end].decode() if end > 0 else None


def _source(suffix: str) -> tuple[str, int, int]:
    """(topic, partition, offset) of a held key's last part."""
    topic, partition, offset = suffix.rsplit(":", 2)
    return topic, int(partition), int(offset)


def _index_key(held_at: float, contact_id: str, suffix: str) -> tuple[str, ...]:
    return ("t", f"{round(held_at * 1e6):020d}", contact_id, suffix)


class Router:
    """Routes a batch of validated events; the caller sends, flushes, then commits.

    Opening it counts the held events (one scan, the only one: the count then follows each
    commit) and stamps those held before hold times were recorded with the time of this start,
    so their limit counts from here.

    Attributes:
        assigned: input (topic, partition)s this worker consumes, set on every assignment; held
            events of other partitions (left in the state by an earlier assignment) are neither
            counted nor expired here: their owner holds its own copy. None until the first
            assignment: everything is counted and nothing expires.
    """

    def __init__(self, state: KVState):
        self.state = state
        self.assigned: Optional[frozenset[tuple[str, int]]] = None
        self._held: Counter[tuple[str, int]] = Counter()
        now, stamps = time.time(), {}
        for (contact_id, suffix), value in state.scan("h"):
            self._held[_source(suffix)[:2]] += 1
            if "held_at" not in value:
                stamps[("h", contact_id, suffix)] = {**value, "held_at": now}
                stamps[_index_key(now, contact_id, suffix)] = None
        if stamps:
            state.commit(stamps)

    def route(self, batch: Sequence[tuple[RawRecord, str, InputEvent]]) -> tuple[list[Forward], dict]:
        """Return the forwards for ``batch`` and the pending state change.

        Args:
            batch: (record, contract topic, event) in consumption order.

        Returns:
            ``(forwards, change)``: send every forward and flush the producer, then pass
            ``change`` to ``commit`` — so a crash in between replays (duplicates are harmless
            downstream) and never loses an event.
        """
        directory: dict[str, Optional[list]] = {}
        puts: dict[tuple[str, ...], object] = {}
        deletes: list[tuple[str, ...]] = []
        positions: dict[tuple[str, int], int] = {}
        forwards: list[Forward] = []

        def lookup(contact_id: str) -> Optional[list]:
            if contact_id not in directory:
                directory[contact_id] = self.state.get("d", contact_id)
            return directory[contact_id]

        for record, topic, event in batch:
            positions[(record.topic, record.partition)] = record.offset + 1
            ts = record.timestamp
            if isinstance(event, (Company, Opportunity)):  # both name their account
                forwards.append(Forward(event.company_id, topic, event, ts))
            elif isinstance(event, Contact):
                forwards.append(Forward(event.company_id, topic, event, ts))
                current = lookup(event.contact_id)
                t = to_micros(event.updated_at)
                if current is None or t >= current[1]:
                    directory[event.contact_id] = [event.company_id, t]
                    puts[("d", event.contact_id)] = [event.company_id, t]
                if current is None:
                    forwards.extend(self._release(event.contact_id, event.company_id, puts, deletes))
            elif isinstance(event, (Activity, Order)):
                known = lookup(event.contact_id)
                account = known[0] if known else getattr(event, "company_id", None)
                if account:
                    forwards.append(Forward(account, topic, event, ts))
                else:
                    suffix = f"{record.topic}:{record.partition}:{record.offset}"
                    held_at = time.time()
                    puts[("h", event.contact_id, suffix)] = {"topic": topic, "event": json.loads(event_json(event)),
                                                            "ts": ts, "held_at": held_at}
                    puts[_index_key(held_at, event.contact_id, suffix)] = None
        held = Counter(_source(k[2])[:2] for k in puts if k[0] == "h")
        held.subtract(_source(k[2])[:2] for k in deletes if k[0] == "h")
        return forwards, {"puts": puts, "deletes": deletes, "positions": positions, "held": held}

    def _release(self, contact_id: str, account: str, puts: dict, deletes: list) -> list[Forward]:
        released = []
        held = [(("h", contact_id, suffix[0]), value) for suffix, value in self.state.scan("h", contact_id)]
        held += [(k, v) for k, v in puts.items() if k[:2] == ("h", contact_id)]
        for key, value in held:
            event = parse_record(value["topic"], value["event"])
            if not isinstance(event, ParseError):
                released.append(Forward(account, value["topic"], event, value.get("ts")))
            index = _index_key(value["held_at"], contact_id, key[2]) if "held_at" in value else None
            if puts.pop(key, _ABSENT) is _ABSENT:  # held by an earlier batch: stored
                deletes.append(key)
                if index is not None:
                    deletes.append(index)
            elif index is not None:
                puts.pop(index, None)
        return released

    def expire(self, max_age: float, now: Optional[float] = None,
               limit: int = 1000) -> tuple[list[tuple[DeadLetter, bytes]], dict]:
        """Dead letters for held events of assigned partitions held more than ``max_age``
        seconds of wall-clock time, oldest first, at most ``limit``; and the state change that
        forgets them.

        Returns:
            ``([(letter, key), ...], change)``: send every letter to the dead-letter topic (key:
            the contact id, the original record's key) and flush the producer, then pass
            ``change`` to ``commit`` — as ``route``, so a crash in between sends them again and
            never loses one.
        """
        now = time.time() if now is None else now
        cutoff = _index_key(now - max_age, "", "")[1]
        letters: list[tuple[DeadLetter, bytes]] = []
        deletes: list[tuple[str, ...]] = []
        held: Counter[tuple[str, int]] = Counter()
        if self.assigned is None:
            return letters, {"puts": {}, "deletes": deletes, "positions": {}, "held": held}
        received = datetime.fromtimestamp(now, timezone.utc)
        for (stamp, contact_id, suffix), _ in self.state.scan("t"):
            if stamp > cutoff or len(letters) >= limit:
                break
            topic, partition, offset = _source(suffix)
            if (topic, partition) not in self.assigned:
                continue
            value = self.state.get("h", contact_id, suffix)
            deletes.append(("t", stamp, contact_id, suffix))
            if value is None:  # an index entry whose event is gone: only the entry to drop
                continue
            deletes.append(("h", contact_id, suffix))
            held[(topic, partition)] -= 1
            since = format_time(datetime.fromtimestamp(value["held_at"], timezone.utc))
            error = (f"contact_id: {NEVER_ARRIVED}: no contact {contact_id} within "
                     f"{max_age / 86400:g} days of holding this event (held since {since})")
            raw = json.dumps(value["event"], separators=(",", ":")).encode()
            record = RawRecord(topic, partition, offset, contact_id.encode(), raw)
            letters.append((dead_letter(record, error, received), record.key))
        return letters, {"puts": {}, "deletes": deletes, "positions": {}, "held": held}

    def commit(self, change: dict) -> None:
        self.state.commit(change["puts"], change["deletes"], change["positions"])
        self._held.update(change.get("held", {}))

    def held_count(self) -> int:
        """Events held for a contact not seen yet, in the assigned partitions (all before the
        first assignment). Kept by every commit: no scan."""
        if self.assigned is None:
            return sum(self._held.values())
        return sum(n for tp, n in self._held.items() if tp in self.assigned)
