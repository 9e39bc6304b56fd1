"""Contracts of leadpulse: events, outputs, node and edge type names.

This package is the leaf of the import graph: it imports nothing of ours.
"""
from leadpulse.schemas.events import (
    Activity,
    Company,
    Contact,
    DeadLetter,
    Factor,
    InputEvent,
    LeadAlert,
    LeadScore,
    ModelUpdate,
    Opportunity,
    Order,
)
from leadpulse.schemas.parse import ParseError, parse_event, parse_record
from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, TopicSpec, input_spec_for_topic
from leadpulse.schemas.types import BASE_EDGE_TYPES, EDGE_TYPES, NODE_TYPES, EdgeType, NodeType

__all__ = [
    "Activity", "Company", "Contact", "Opportunity", "Order", "InputEvent",
    "LeadScore", "LeadAlert", "DeadLetter", "ModelUpdate", "Factor",
    "ParseError", "parse_event", "parse_record",
    "INPUT_TOPICS", "OUTPUT_TOPICS", "TopicSpec", "input_spec_for_topic",
    "NODE_TYPES", "EDGE_TYPES", "BASE_EDGE_TYPES", "EdgeType", "NodeType",
]
