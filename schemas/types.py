"""Node and edge type names: the one place they are spelled.

As in PyG's ``typing.py``, a node type is a string and an edge type a
``(src, relation, dst)`` triple. Reverse edge types are named ``rev_<relation>``
(the spelling ``torch_geometric.transforms.ToUndirected`` produces), so a graph
built here and one made undirected by PyG agree on names.
"""
from typing import Tuple

NodeType = str
EdgeType = Tuple[str, str, str]

CONTACT: NodeType = "contact"
COMPANY: NodeType = "company"
ACTIVITY: NodeType = "activity"
OPPORTUNITY: NodeType = "opportunity"
ORDER: NodeType = "order"

NODE_TYPES: tuple[NodeType, ...] = (CONTACT, COMPANY, ACTIVITY, OPPORTUNITY, ORDER)

WORKS_AT: EdgeType = (CONTACT, "works_at", COMPANY)
HAD_ACTIVITY: EdgeType = (CONTACT, "had_activity", ACTIVITY)
RELATED_TO: EdgeType = (ACTIVITY, "related_to", OPPORTUNITY)
PLACED: EdgeType = (CONTACT, "placed", ORDER)
OWNS: EdgeType = (COMPANY, "owns", OPPORTUNITY)
INDUSTRY_PEER: EdgeType = (COMPANY, "industry_peer", COMPANY)
SIMILAR_TO: EdgeType = (COMPANY, "similar_to", COMPANY)

BASE_EDGE_TYPES: tuple[EdgeType, ...] = (
    WORKS_AT, HAD_ACTIVITY, RELATED_TO, PLACED, OWNS, INDUSTRY_PEER, SIMILAR_TO,
)


def reverse(edge_type: EdgeType) -> EdgeType:
    """The reverse edge type, e.g. ``(company, rev_works_at, contact)``."""
    src, rel, dst = edge_type
    return (dst, rel[4:] if rel.startswith("rev_") else f"rev_{rel}", src)


EDGE_TYPES: tuple[EdgeType, ...] = BASE_EDGE_TYPES + tuple(reverse(e) for e in BASE_EDGE_TYPES)
