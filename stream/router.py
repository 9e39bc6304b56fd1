"""Stage 1: re-key validated input events by account (company_id).

Activities and orders are keyed by contact and carry no company, so the router keeps a
directory contact -> company for the contacts of its input partitions. Input topics are
co-partitioned by contact id (contacts, activities, orders share the key), so the worker that
owns partition p of crm.activities also owns partition p of crm.contacts and therefore knows
every contact whose activities it sees. An activity or order for a contact not seen yet is
held (durably) and forwarded when the contact arrives; the graph applies it at its own event
time, so holding changes when it is applied, never what the graph says as of any time. A held
event whose contact did not arrive within a limit of wall-clock time becomes a dead letter
("contact never arrived", ``Router.expire``; docs/stream.md, "Held events"). A contact version
that moves the person to another company goes to both accounts: the old one passes the person's
activities on (``stream.carry``; docs/stream.md, "Job changes").

State (``stream.state.KVState``):
    ``d\\x00<contact_id>``                       -> [company_id, version time micros]
    ``q\\x00<opportunity_id>``                   -> [company_id, version time micros] (to route its
                                                    partial updates and deletes)
    ``e\\x00<sha-256 of a contact_id>``          -> {"at": erasure time micros}: the person was
                                                    erased; their events up to then are dropped
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
from typing import NamedTuple, Optional, Sequence, Union

from leadpulse.schemas.events import Activity, Company, Contact, DeadLetter, Delete, Opportunity, Order
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.partial import ID_FIELD, Partial, parse_partial
from leadpulse.schemas.tables import event_json, format_time
from leadpulse.schemas.timeutil import to_micros
from leadpulse.stream.erasure import erased_key, person_of
from leadpulse.stream.ingest import Accepted, RawRecord, Snapshot, dead_letter
from leadpulse.stream.state import KVState

#: reason of a held event dead-lettered because its contact did not arrive in time (the
#: ``reason`` label of ``leadpulse_events_rejected_total``)
NEVER_ARRIVED = "contact never arrived"
#: reason kind of a change the router cannot give an account: a partial update or a delete of an
#: entity it never saw
UNKNOWN = "unknown entity"
_ABSENT = object()
#: the operations an account-topic record carries (``op``; absent = a whole record)
UPSERT, PATCH, SNAPSHOT, DELETE = "upsert", "patch", "snapshot", "delete"


@dataclass(frozen=True)
class Forward:
    """An event bound for the account topic.

    Args:
        account: the company_id that owns the event (the message key downstream).
        contract_topic: the default input topic name of its contract.
        event: the validated event, a ``Partial`` (merged by the account stage, which owns the
            entity's versions) or a ``Snapshot``.
        produced_at: when the input record was written to Kafka (epoch seconds), carried so
            the account stage can measure input→publish latency across both stages.
        source: ``topic:partition:offset`` of the input record, for a partial update (a merge
            that breaks the contract is dead-lettered by the account stage, naming it).
        departure: a contact version sent to the account the contact *leaves* (its event names
            the new company): that account's stage passes the person's activities on
            (``stream.carry``) and does not take the lead as its own.
        carried: an activity (or its delete) one account stage passed to another with a
            departure, not an input record.
        moved_from: on the version sent to a contact's new account, the company they left
            (the account stage raises a ``job_change`` alert).
    """
    account: str
    contract_topic: str
    event: Accepted
    produced_at: Optional[float] = None
    source: Optional[str] = None
    departure: bool = False
    carried: bool = False
    moved_from: Optional[str] = None

    def wire(self) -> bytes:
        return _wire(self.contract_topic, self.event, self.produced_at, self.source, self.departure, self.carried,
                     self.moved_from)


def _wire(topic: str, item: Accepted, produced_at: Optional[float], source: Optional[str] = None,
          departure: bool = False, carried: bool = False, moved_from: Optional[str] = None) -> bytes:
    op, body = _op_of(item)
    data: dict = {"topic": topic, "event": body}
    if op != UPSERT:
        data["op"] = op
    if produced_at is not None:
        data["ts"] = produced_at
    if source is not None:
        data["src"] = source
    if departure:
        data["dep"] = 1
    if carried:
        data["car"] = 1
    if moved_from is not None:
        data["from"] = moved_from
    return json.dumps(data, separators=(",", ":")).encode()


def _op_of(item: Accepted) -> tuple[str, dict]:
    if isinstance(item, Partial):
        return PATCH, item.wire()
    if isinstance(item, Snapshot):
        return SNAPSHOT, json.loads(event_json(item.event))
    return (DELETE if isinstance(item, Delete) else UPSERT), json.loads(event_json(item))


def _parse_op(topic: str, op: str, body: dict) -> Union[Accepted, ParseError]:
    if op == DELETE:
        try:
            return Delete.model_validate(body)
        except ValueError as exc:
            return ParseError("", f"delete: {exc}"[:300])
    if op == PATCH:
        return parse_partial(topic, body)
    event = parse_record(topic, body)
    return Snapshot(event) if op == SNAPSHOT and not isinstance(event, ParseError) else event


class Forwarded(NamedTuple):
    """An account-topic record, decoded (``Forward``'s fields)."""
    topic: str
    item: Accepted
    produced_at: Optional[float]
    source: Optional[str]
    departure: bool = False
    carried: bool = False
    moved_from: Optional[str] = None


def decode_forward(raw: bytes) -> Forwarded:
    """Inverse of ``Forward.wire``.

    The account topic carries only events we validated, so a parse error here means a foreign
    producer wrote to our internal topic.
    """
    data = json.loads(raw)
    item = _parse_op(data["topic"], data.get("op", UPSERT), data["event"])
    if isinstance(item, ParseError):
        raise ValueError(f"invalid account-topic record: {item}")
    return Forwarded(data["topic"], item, data.get("ts"), data.get("src"), bool(data.get("dep")), bool(data.get("car")),
                     data.get("from"))


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

    def route(self, batch: Sequence[tuple[RawRecord, str, Accepted]]) -> tuple[list[Forward], dict]:
        """Return the forwards for ``batch`` and the pending state change.

        Args:
            batch: (record, contract topic, accepted item) in consumption order.

        Returns:
            ``(forwards, change)``: send every forward and ``change["letters"]`` (dead letters,
            ``(letter, key, reason kind)``: changes no account can be found for) and flush the
            producer, then pass ``change`` to ``commit`` — so a crash in between replays
            (duplicates are harmless downstream) and never loses an event.
            ``change["erased"]`` counts the events dropped because their person was erased.
        """
        step = _Step(self)
        for record, topic, item in batch:
            step.positions[(record.topic, record.partition)] = record.offset + 1
            if step.erased(item):
                continue
            step.route(record, topic, item)
        held = Counter(_source(k[2])[:2] for k in step.puts if k[0] == "h")
        held.subtract(_source(k[2])[:2] for k in step.deletes if k[0] == "h")
        return step.forwards, {"puts": step.puts, "deletes": step.deletes, "positions": step.positions,
                               "held": held, "letters": step.letters, "erased": step.dropped}

    def _release(self, contact_id: str, account: str, puts: dict, deletes: list) -> list[Forward]:
        released = []
        held = [(("h", contact_id, suffix[0]), value) for suffix, value in self.state.scan("h", contact_id)]
        held += [(k, v) for k, v in puts.items() if k[:2] == ("h", contact_id)]
        for key, value in held:
            event = _parse_op(value["topic"], value.get("op", UPSERT), value["event"])
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

    def erase(self, contact_id: str, at: int) -> dict:
        """The state change that forgets ``contact_id`` (directory entry, held events) and
        remembers that their events up to ``at`` (micros) are to be dropped; commit it, then
        ``state.purge()``."""
        deletes: list[tuple[str, ...]] = [("d", contact_id)]
        held: Counter[tuple[str, int]] = Counter()
        for (suffix,), value in self.state.scan("h", contact_id):
            deletes.append(("h", contact_id, suffix))
            held[_source(suffix)[:2]] -= 1
            if "held_at" in value:
                deletes.append(_index_key(value["held_at"], contact_id, suffix))
        known = self.state.get("e", erased_key(contact_id))
        puts = {("e", erased_key(contact_id)): {"at": max(at, known["at"] if known else at)}}
        return {"puts": puts, "deletes": deletes, "positions": {}, "held": held}

    def commit(self, change: dict) -> None:
        self.state.commit(change["puts"], change["deletes"], change["positions"])
        self._held.update(change.get("held", {}))

    def held_count(self) -> int:
        """Events held for a contact not seen yet, in the assigned partitions (all before the
        first assignment). Kept by every commit: no scan."""
        if self.assigned is None:
            return sum(self._held.values())
        return sum(n for tp, n in self._held.items() if tp in self.assigned)


class _Step:
    """One ``route`` call: the directory reads and writes it makes, in consumption order."""

    def __init__(self, router: Router):
        self.router, self.state = router, router.state
        self.cache: dict[tuple[str, str], object] = {}
        self.puts: dict[tuple[str, ...], object] = {}
        self.deletes: list[tuple[str, ...]] = []
        self.positions: dict[tuple[str, int], int] = {}
        self.forwards: list[Forward] = []
        self.letters: list[tuple[DeadLetter, Optional[bytes], str]] = []
        self.dropped = 0

    def lookup(self, namespace: str, entity_id: str) -> Optional[list]:
        key = (namespace, entity_id)
        if key not in self.cache:
            self.cache[key] = self.state.get(namespace, entity_id)
        return self.cache[key]  # type: ignore[return-value]

    def learn(self, namespace: str, entity_id: str, account: str, t: int) -> Optional[list]:
        """Record ``entity_id`` -> ``account`` as of ``t`` unless a newer version said otherwise;
        what was known before."""
        current = self.lookup(namespace, entity_id)
        if current is None or t >= current[1]:
            self.cache[(namespace, entity_id)] = self.puts[(namespace, entity_id)] = [account, t]
        return current

    def erased(self, item: Accepted) -> bool:
        """Whether ``item`` belongs to an erased person and dates from before the erasure."""
        person = person_of(item)
        if person is None:
            return False
        since = self.lookup("e", erased_key(person))
        if since is None or to_micros(item.event_time) > since["at"]:
            return False
        self.dropped += 1
        return True

    def send(self, account: str, record: RawRecord, topic: str, item: Accepted, **flags) -> None:
        source = f"{record.topic}:{record.partition}:{record.offset}" if isinstance(item, Partial) else None
        self.forwards.append(Forward(account, topic, item, record.timestamp, source, **flags))

    def reject(self, record: RawRecord, field: str, why: str) -> None:
        error = f"{field}: {UNKNOWN}: {why}"
        self.letters.append((dead_letter(record, error), record.key, UNKNOWN))

    def hold(self, record: RawRecord, topic: str, item: Accepted, contact_id: str) -> None:
        op, body = _op_of(item)
        suffix = f"{record.topic}:{record.partition}:{record.offset}"
        held_at = time.time()
        value = {"topic": topic, "event": body, "ts": record.timestamp, "held_at": held_at}
        if op != UPSERT:
            value["op"] = op
        self.puts[("h", contact_id, suffix)] = value
        self.puts[_index_key(held_at, contact_id, suffix)] = None

    def route(self, record: RawRecord, topic: str, item: Accepted) -> None:
        event = item.event if isinstance(item, Snapshot) else item
        if isinstance(event, Partial):
            self.route_partial(record, topic, event)
        elif isinstance(event, Delete):
            self.route_delete(record, topic, event)
        elif isinstance(event, Company):
            self.send(event.company_id, record, topic, item)
        elif isinstance(event, Opportunity):
            self.learn("q", event.opportunity_id, event.company_id, to_micros(event.updated_at))
            self.send(event.company_id, record, topic, item)
        elif isinstance(event, Contact):
            known = self.learn("d", event.contact_id, event.company_id, to_micros(event.updated_at))
            self.move(known, event.company_id, to_micros(event.updated_at), record, topic, item)
            if known is None:
                self.release(event.contact_id, event.company_id)
        elif isinstance(event, (Activity, Order)):
            known = self.lookup("d", event.contact_id)
            account = known[0] if known else getattr(event, "company_id", None)
            if account:
                self.send(account, record, topic, item)
            else:
                self.hold(record, topic, item, event.contact_id)

    def move(self, known: Optional[list], company: str, t: int, record: RawRecord, topic: str,
             item: Accepted) -> None:
        """Send a contact version to its company; when it is the newest and moves the contact
        from the account the directory knew, that account gets it too, as a departure
        (``stream.carry``)."""
        left = known[0] if known is not None and known[0] != company and t >= known[1] else None
        self.send(company, record, topic, item, moved_from=left)
        if left is not None:
            self.send(left, record, topic, item, departure=True)

    def release(self, contact_id: str, account: str) -> None:
        self.forwards.extend(self.router._release(contact_id, account, self.puts, self.deletes))

    def route_partial(self, record: RawRecord, topic: str, p: Partial) -> None:
        t = to_micros(p.event_time)
        company = p.fields.get("company_id")
        if p.kind == "company":
            account = p.entity_id
        elif p.kind in ("contact", "opportunity"):
            namespace = "d" if p.kind == "contact" else "q"
            known = self.lookup(namespace, p.entity_id)
            if company and known is not None:  # it names its (new) account
                self.learn(namespace, p.entity_id, company, t)
                if p.kind == "contact":
                    self.move(known, company, t, record, topic, p)
                    return
            account = company if company and known is not None else (known[0] if known else None)
        else:  # an activity or order: its account is its contact's
            person = p.fields.get("contact_id") or (record.key or b"").decode("utf-8", "replace")
            known = self.lookup("d", person) if person else None
            account = known[0] if known else None
        if account is None:
            self.reject(record, ID_FIELD[p.kind], f"partial update of {p.kind} {p.entity_id}, which was never "
                                                   "seen whole: the first version of an entity must carry every "
                                                   "required field")
        else:
            self.send(account, record, topic, p)

    def route_delete(self, record: RawRecord, topic: str, d: Delete) -> None:
        hints = d.model_extra or {}
        if d.entity == "company":
            self.send(d.entity_id, record, topic, d)
            return
        if d.entity == "opportunity":
            known = self.lookup("q", d.entity_id)
            account = known[0] if known else hints.get("company_id")
            if account:
                self.send(account, record, topic, d)
            else:
                self.reject(record, "opportunity_id", f"delete of opportunity {d.entity_id}, which was never seen "
                                                      "and names no company")
            return
        person = d.entity_id if d.entity == "contact" else hints.get("contact_id")
        if not person:
            self.reject(record, "contact_id", f"delete of activity {d.entity_id} names no contact: key the "
                                              "topic by contact_id or send the deleted row (`before`)")
            return
        known = self.lookup("d", person)
        if known:
            self.send(known[0], record, topic, d)
        elif hints.get("company_id") and d.entity == "contact":
            self.send(hints["company_id"], record, topic, d)
        else:  # before the contact itself (out of order): held like its activities
            self.hold(record, topic, d, person)
