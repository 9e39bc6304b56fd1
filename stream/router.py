"""Stage 1: re-key validated input events by account (company_id).

Activities and orders are keyed by contact and carry no company, so the router keeps a
directory contact -> company for the contacts of its input partitions. Input topics are
co-partitioned by contact id (contacts, activities, orders share the key), so the worker that
owns partition p of crm.activities also owns partition p of crm.contacts and therefore knows
every contact whose activities it sees. An activity or order for a contact not seen yet is
held (durably) and forwarded when the contact arrives; the graph applies it at its own event
time, so holding changes when it is applied, never what the graph says as of any time.

State (``stream.state.KVState``):
    ``d\\x00<contact_id>``                       -> [company_id, version time micros]
    ``h\\x00<contact_id>\\x00<topic>:<partition>:<offset>`` -> held event (wire JSON) + contract topic
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

from leadpulse.schemas.events import Activity, Company, Contact, InputEvent, Opportunity, Order
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.tables import event_json
from leadpulse.schemas.timeutil import to_micros
from leadpulse.stream.ingest import RawRecord
from leadpulse.stream.state import KVState


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


class Router:
    """Routes a batch of validated events; the caller sends, flushes, then commits."""

    def __init__(self, state: KVState):
        self.state = state

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
                    held_key = ("h", event.contact_id, f"{record.topic}:{record.partition}:{record.offset}")
                    puts[held_key] = {"topic": topic, "event": json.loads(event_json(event)), "ts": ts}
        return forwards, {"puts": puts, "deletes": deletes, "positions": positions}

    def _release(self, contact_id: str, account: str, puts: dict, deletes: list) -> list[Forward]:
        released = []
        held = [(("h", contact_id, suffix[0]), value) for suffix, value in self.state.scan("h", contact_id)]
        held += [(k, v) for k, v in puts.items() if k[:2] == ("h", contact_id)]
        for key, value in held:
            event = parse_record(value["topic"], value["event"])
            if not isinstance(event, ParseError):
                released.append(Forward(account, value["topic"], event, value.get("ts")))
            puts.pop(key, None)
            deletes.append(key)
        return released

    def commit(self, change: dict) -> None:
        self.state.commit(change["puts"], change["deletes"], change["positions"])

    def held_count(self) -> int:
        return sum(1 for _ in self.state.scan("h"))
