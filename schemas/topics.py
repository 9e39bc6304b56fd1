"""Topic contracts: default names, the model each carries, and its key field."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Type

from pydantic import BaseModel

from leadpulse.schemas.events import (
    Activity,
    Company,
    Contact,
    DeadLetter,
    Erasure,
    LeadAlert,
    LeadScore,
    ModelUpdate,
    Opportunity,
    Order,
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract.

    Args:
        name: default topic name (configurable at run time).
        model: pydantic model of the JSON value.
        key_field: field whose value is the message key.
        table: CSV file stem for input topics (``companies`` -> ``companies.csv``), else None.
    """
    name: str
    model: Type[BaseModel]
    key_field: str
    table: Optional[str] = None


INPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("crm.companies", Company, "company_id", "companies"),
    TopicSpec("crm.contacts", Contact, "contact_id", "contacts"),
    TopicSpec("crm.activities", Activity, "contact_id", "activities"),
    TopicSpec("crm.opportunities", Opportunity, "opportunity_id", "opportunities"),
    TopicSpec("crm.orders", Order, "contact_id", "orders"),
)

OUTPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("leads.scores", LeadScore, "contact_id"),
    TopicSpec("leads.alerts", LeadAlert, "contact_id"),
    TopicSpec("crm.deadletter", DeadLetter, "source_topic"),
    TopicSpec("models.updates", ModelUpdate, "model_version"),
)

#: per node kind of an input topic: the field holding the entity's own id, and its event time
ENTITY_ID_FIELD = {"company": "company_id", "contact": "contact_id", "activity": "activity_id",
                   "opportunity": "opportunity_id", "order": "order_id"}
EVENT_TIME_FIELD = {"company": "updated_at", "contact": "updated_at", "activity": "timestamp",
                    "opportunity": "updated_at", "order": "timestamp"}

#: topics that steer every worker rather than feed the graph
CONTROL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("crm.erasures", Erasure, "contact_id"),
)

#: every topic of the contract
ALL_TOPICS: tuple[TopicSpec, ...] = INPUT_TOPICS + OUTPUT_TOPICS + CONTROL_TOPICS

_BY_NAME = {s.name: s for s in INPUT_TOPICS}
_BY_KIND = {s.model.kind: s for s in INPUT_TOPICS}  # type: ignore[attr-defined]
_BY_TABLE = {s.table: s for s in INPUT_TOPICS}


def input_spec_for_topic(name: str) -> TopicSpec:
    """The input spec for a default topic name, a node kind or a table stem."""
    for index in (_BY_NAME, _BY_KIND, _BY_TABLE):
        if name in index:
            return index[name]
    raise KeyError(f"unknown input topic {name!r}")
