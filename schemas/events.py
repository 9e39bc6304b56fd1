"""Pydantic models of the input events and the output records (docs/contracts.md).

Input models keep unknown extra fields (``extra="allow"``): a producer adding a field
is never an error. Timestamps must carry a zone; they are normalised to UTC.
Categorical fields are open strings (any non-empty value is a category).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_ID = 256
MAX_TEXT = 1024


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339, e.g. 2026-01-31T12:00:00Z)")
    return value.astimezone(timezone.utc)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _number_in(value: Any) -> Any:
    # JSON true/false would otherwise pass as 1/0; "NaN"/"inf" strings would parse as floats.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, (float, str)):
        try:
            number = float(value)
        except ValueError:
            return value  # pydantic reports the parsing error with its own type
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
    return value


def _timestamp_in(value: Any) -> Any:
    # RFC 3339 strings only: a bare number would silently become seconds since 1970.
    if isinstance(value, (str, datetime)):
        return value
    raise ValueError("must be an RFC 3339 timestamp string with a time zone")


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_in), AfterValidator(_utc)]
EntityId = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Category = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Amount = Annotated[float, BeforeValidator(_number_in), Field(ge=0, le=1e12), AfterValidator(_finite)]


class _Input(BaseModel):
    # strict=False lets "12" parse as 12 for numbers; ids and categories stay str-only below.
    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    #: node type of the entity this event creates or versions (schemas.types)
    kind: ClassVar[str] = ""


class Company(_Input):
    kind: ClassVar[str] = "company"
    company_id: EntityId
    updated_at: Timestamp
    name: Optional[Text] = None
    industry: Optional[Category] = None
    employees: Optional[Annotated[int, BeforeValidator(_number_in), Field(ge=0, le=10_000_000)]] = None
    revenue: Optional[Amount] = None
    tech_stack: Optional[list[Category]] = Field(default=None, max_length=200)
    country: Optional[Category] = None

    @property
    def event_time(self) -> datetime:
        return self.updated_at

    @property
    def entity_id(self) -> str:
        return self.company_id


class Contact(_Input):
    kind: ClassVar[str] = "contact"
    contact_id: EntityId
    company_id: EntityId
    updated_at: Timestamp
    title: Optional[Text] = None
    department: Optional[Category] = None
    seniority: Optional[Category] = None
    source: Optional[Category] = None
    created_at: Optional[Timestamp] = None

    @property
    def event_time(self) -> datetime:
        return self.updated_at

    @property
    def entity_id(self) -> str:
        return self.contact_id


class Activity(_Input):
    kind: ClassVar[str] = "activity"
    activity_id: EntityId
    contact_id: EntityId
    type: Category
    timestamp: Timestamp
    page: Optional[Category] = None
    duration_s: Optional[Annotated[float, BeforeValidator(_number_in), Field(ge=0, le=1e7), AfterValidator(_finite)]] = None
    sentiment: Optional[Annotated[float, BeforeValidator(_number_in), Field(ge=-1, le=1), AfterValidator(_finite)]] = None
    opportunity_id: Optional[EntityId] = None

    @property
    def event_time(self) -> datetime:
        return self.timestamp

    @property
    def entity_id(self) -> str:
        return self.activity_id


class Opportunity(_Input):
    kind: ClassVar[str] = "opportunity"
    opportunity_id: EntityId
    company_id: EntityId
    stage: Category
    updated_at: Timestamp
    contact_id: Optional[EntityId] = None
    amount: Optional[Amount] = None
    created_at: Optional[Timestamp] = None
    close_date: Optional[Timestamp] = None

    @property
    def event_time(self) -> datetime:
        return self.updated_at

    @property
    def entity_id(self) -> str:
        return self.opportunity_id


class Order(_Input):
    kind: ClassVar[str] = "order"
    order_id: EntityId
    contact_id: EntityId
    amount: Amount
    timestamp: Timestamp
    company_id: Optional[EntityId] = None

    @property
    def event_time(self) -> datetime:
        return self.timestamp

    @property
    def entity_id(self) -> str:
        return self.order_id


class Delete(_Input):
    """The entity ``entity_id`` of type ``entity`` is deleted as of ``deleted_at``.

    Reads as of ``deleted_at`` or later no longer see it (nor its edges; a deleted contact's
    activities go with it); reads as of earlier times are unchanged. A later version of the
    entity (time after ``deleted_at``) re-creates it. Orders are facts of the account's
    revenue and are not deleted this way (erasing a person is a separate step).
    Stage 1 makes one of a change-data-capture delete or a tombstone (docs/graph_store.md,
    "Deletes"; docs/bring-your-own-crm.md); extra fields (``contact_id``, ``company_id``) are
    hints the router uses to find the account.
    """
    kind: ClassVar[str] = "delete"
    entity: Literal["company", "contact", "activity", "opportunity"]
    entity_id: EntityId
    deleted_at: Timestamp

    @property
    def event_time(self) -> datetime:
        return self.deleted_at


InputEvent = Union[Company, Contact, Activity, Opportunity, Order, Delete]


class Erasure(BaseModel):
    """A request to erase a person from every state the workers keep (``crm.erasures``, key
    contact_id; docs/operating.md, "Erasing a person"). Events of the person dated up to
    ``requested_at`` that arrive later are dropped, not applied."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_id: EntityId
    requested_at: Timestamp


# ---------------------------------------------------------------- outputs
class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Factor(_Output):
    factor: str
    contribution: float


Tier = Literal["A", "B", "C", "D"]


class LeadScore(_Output):
    contact_id: str
    company_id: Optional[str]
    score: Annotated[float, Field(ge=0, le=1)]
    tier: Tier
    previous_score: Optional[float]
    delta: float
    model_version: str
    as_of: Timestamp
    scored_at: Timestamp
    cause: str
    top_factors: list[Factor]
    #: the factors that raise the score, largest first, and those that lower it, largest drop
    #: first; their words agree with their sign (empty when not explained, like ``top_factors``)
    positive_factors: list[Factor] = []
    negative_factors: list[Factor] = []
    #: share of this worker's currently scored leads with a lower score, 0..100, when published
    #: (docs/contracts.md#leadsscores); None from a producer that does not rank
    percentile: Optional[Annotated[float, Field(ge=0, le=100)]] = None
    #: ``active``: a score of a lead in the model's population; ``left_population``: the lead's
    #: final record, it left the population as of ``as_of`` (e.g. it converted) and gets no
    #: further score (score and tier are its last published ones, delta 0, no factors)
    status: Literal["active", "left_population"] = "active"


class LeadAlert(_Output):
    """``jump``: the score rose by ``threshold`` or more; ``tier_change``: it crossed the cut
    point ``threshold``; ``job_change``: a known contact now works at another account
    (``previous_company_id``; ``threshold`` 0), scored at the new one.

    The factors and the percentile are those of the score that raised the alert (its
    ``LeadScore``)."""
    contact_id: str
    company_id: Optional[str]
    kind: Literal["jump", "tier_change", "job_change"]
    score: float
    previous_score: Optional[float]
    delta: float
    threshold: float
    model_version: str
    as_of: Timestamp
    top_factors: list[Factor]
    previous_company_id: Optional[str] = None
    #: as in ``LeadScore``: what raises the score (contribution > 0) and what lowers it (< 0);
    #: empty when not explained, and from a producer that predates them
    positive_factors: list[Factor] = []
    negative_factors: list[Factor] = []
    #: as in ``LeadScore``; None from a producer that does not rank
    percentile: Optional[Annotated[float, Field(ge=0, le=100)]] = None


class DeadLetter(_Output):
    source_topic: str
    partition: int
    offset: int
    error: str
    raw: str  # base64 of the original bytes
    received_at: Timestamp


class ModelUpdate(_Output):
    model_version: str
    #: the model's family ("gnn", "lgbm_agg", "hybrid", "rules"; also the version's prefix);
    #: None from a producer that predates families
    family: Optional[str] = None
    trained_at: Timestamp
    metrics: dict[str, float]
    promoted: bool
    reason: str
