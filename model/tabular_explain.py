"""Signed factors of the models that explain themselves: the tabular baselines by per-column
contributions, the rules model by its points (docs/model.md#serving-any-family).

**Tabular models** (``explain_columns``). LightGBM's TreeSHAP (``Booster.predict(X,
pred_contrib=True)``) splits each lead's raw score exactly into one log-odds contribution per
column plus the expected score; logistic regression's are ``coef * standardised value`` (against
the training mean). The columns are summed into the GNN's evidence groups (``model.factors``):

=================  ============================================================================
group              columns of ``model.tabular`` (``Encoder.columns``)
=================  ============================================================================
``own_activity``   the contact's ``model.temporal`` columns, except those below
``steps_order``    ``order_pricing_before_demo(_recent)``, when the lead has a pricing view and a
                   demo request (else ``own_activity``)
``silence``        ``days_since_last_activity``, ``days_since_last_high_intent``, when the last
                   activity is ``SILENCE_DAYS`` old or more (else ``own_activity``)
``career``         ``model.career``'s columns
``title``          ``seniority=*``, ``department=*``, ``is_decision_maker``
``source``         ``source=*``, ``tenure_days`` (how long the lead is in the CRM), ``is_stub``
``colleagues``     ``acct_contacts`` ... ``acct_days_since_activity`` (the account's other
                   contacts' engagement; its maximum and most recent activity count the lead too)
``account_orders`` ``acct_orders_*``, ``acct_order_amount_90d``, ``acct_days_since_last_order``,
                   ``acct_ever_bought`` and the lead's own ``own_orders_ever``,
                   ``own_days_since_order`` (its orders are its account's)
``peers``          ``industry_peer_*``, ``similar_to_*``
``firmographics``  ``employees_log``, ``revenue_log``, ``tech_count``, ``has_company``,
                   ``industry=*``, ``country=*``, ``tech=*``
``opportunities``  ``opp_*``
=================  ============================================================================

A group's probability points are ``p - sigmoid(logit - c)``, ``c`` its summed log-odds: the
score minus the score without that evidence, as the GNN's occlusion reports it. The reference
is not the same: SHAP compares a lead with the average training lead, the GNN with a lead we
know nothing about; either way the words are chosen after the sign (``model.factors``), from
what the graph says about the lead as of t. The groups' points add up to about ``p - p(base)``
(exactly in log-odds; the sigmoid bends the sum a little).

**The rules model** (``explain_points``): its fit points (seniority or title and department:
``title``; industry and head count: ``firmographics``) and its decayed engagement points
(``own_activity``), each turned into probability points through its Platt map the same way,
against a lead with no points.

Example:
    >>> column_group("seniority=vp"), column_group("acct_orders_90d"), column_group("industry_peer_n")
    ('title', 'account_orders', 'peers')
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from scipy.special import expit

from leadpulse.graph_store.base import Subgraph
from leadpulse.model import temporal
from leadpulse.model.career import CAREER_COLUMNS
from leadpulse.model.factors import (
    GROUPS,
    SILENCE_DAYS,
    Explanation,
    Factor,
    _activity_texts,
    _ago,
    _career_text,
    _silence_texts,
    _steps_order_text,
    sign_split,
)
from leadpulse.model.tabular import RawTable, View, feature_table, seniority
from leadpulse.model.values import as_micros
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import INDUSTRY_PEER, SIMILAR_TO

logger = logging.getLogger(__name__)

__all__ = ["column_group", "group_contributions", "explain_columns", "explain_points", "FACT_SETS",
           "RULE_PART_GROUPS"]

_STEPS = ("order_pricing_before_demo", "order_pricing_before_demo_recent")
_SILENCE = ("days_since_last_activity", "days_since_last_high_intent")
_COLLEAGUES = ("acct_contacts", "acct_active30", "acct_active90", "acct_acts30", "acct_high30", "acct_engagement",
               "acct_dm_active90", "acct_engagement_max", "acct_champion_eng", "acct_days_since_activity")
_BY_NAME = {
    **{c: "own_activity" for c in temporal.CONTACT_COLUMNS}, **{c: "steps_order" for c in _STEPS},
    **{c: "silence" for c in _SILENCE}, **{c: "career" for c in CAREER_COLUMNS},
    **{c: "colleagues" for c in _COLLEAGUES}, **{f"acct_{c}": "account_orders" for c in temporal.ORDER_COLUMNS},
    "own_orders_ever": "account_orders", "own_days_since_order": "account_orders", "is_decision_maker": "title",
    "tenure_days": "source", "is_stub": "source", "employees_log": "firmographics", "revenue_log": "firmographics",
    "tech_count": "firmographics", "has_company": "firmographics",
}
_BY_PREFIX = (("seniority=", "title"), ("department=", "title"), ("source=", "source"),
              ("industry=", "firmographics"), ("country=", "firmographics"), ("tech=", "firmographics"),
              ("opp_", "opportunities"), ("industry_peer_", "peers"), ("similar_to_", "peers"))
_G = {g: i for i, g in enumerate(GROUPS)}
#: the feature families the texts read, whatever the model reads
FACT_SETS = ("activity", "account", "career")
#: the rules model's point parts (``RulesModel.point_parts``) and the group each counts in
RULE_PART_GROUPS = (("seniority", "title"), ("department", "title"), ("industry", "firmographics"),
                    ("size", "firmographics"), ("engagement", "own_activity"))


def column_group(column: str) -> str:
    """The evidence group a tabular column counts in (the table in the module doc).

    Raises:
        ValueError: a column no group claims (a new feature must be given one here).
    """
    group = _BY_NAME.get(column)
    if group is None:
        group = next((g for prefix, g in _BY_PREFIX if column.startswith(prefix)), None)
    if group is None:
        raise ValueError(f"tabular column {column!r} belongs to no explanation group (model.tabular_explain)")
    return group


def group_contributions(columns: Sequence[str], contrib: np.ndarray, facts: dict[str, np.ndarray]) -> np.ndarray:
    """Per lead and group (``GROUPS`` order), the summed log-odds of its columns.

    Args:
        columns: the model's columns, aligned with ``contrib``'s.
        contrib: ``(leads, columns)`` log-odds contributions (no expected-value column).
        facts: ``order_pricing_before_demo``, ``has_activity`` and ``days_since_last_activity``
            per lead: where the order of steps and the silence are groups of their own.
    """
    member = np.zeros((len(columns), len(GROUPS)))
    member[np.arange(len(columns)), [_G[column_group(c)] for c in columns]] = 1.0
    out = np.asarray(contrib, dtype=np.float64) @ member
    own = _G["own_activity"]
    for group, apart in (("steps_order", facts["order_pricing_before_demo"] != 0),
                         ("silence", (facts["has_activity"] > 0) & (facts["days_since_last_activity"] >= SILENCE_DAYS))):
        fold = ~apart
        out[fold, own] += out[fold, _G[group]]
        out[fold, _G[group]] = 0.0
    return out


def explain_columns(graph: Subgraph, contact_ids: Sequence[str], columns: Sequence[str], contrib: np.ndarray,
                    logit: np.ndarray, top_k: int = 5, min_abs: float = 1e-4,
                    facts: Optional[RawTable] = None) -> list[Explanation]:
    """Each lead's ``Explanation`` from its per-column log-odds contributions.

    Args:
        graph: the graph the model scored (a k-hop union of the leads, or a snapshot).
        contact_ids: the leads, aligned with ``contrib``'s rows.
        columns: the model's encoded columns (``Encoder.columns``).
        contrib: ``(leads, columns)`` log-odds contributions.
        logit: each lead's log-odds score (the contributions plus the expected score).
        top_k, min_abs: as ``model.explain.explain``. Defaults 5 and 1e-4.
        facts: the leads' ``feature_table`` with at least the ``FACT_SETS`` families, when the
            caller built one (the account family reads the whole graph: built once, not twice);
            built here otherwise.
    """
    ids = list(contact_ids)
    if not ids:
        return []
    raw = facts if facts is not None else feature_table(graph, ids, FACT_SETS)
    facts = {c: raw.num[:, j] for j, c in enumerate(raw.num_cols)}
    groups = group_contributions(columns, contrib, facts)
    logit = np.asarray(logit, dtype=np.float64)
    points = expit(logit)[:, None] - expit(logit[:, None] - groups)
    texts = _Texts(graph, ids, facts)
    out = []
    for i in range(len(ids)):
        factors = [Factor(texts.of(g, i, points[i, j]), g, float(points[i, j]))
                   for j, g in enumerate(GROUPS) if groups[i, j] != 0.0]
        out.append(sign_split(factors, top_k, min_abs))
    return out


def explain_points(graph: Subgraph, contact_ids: Sequence[str], parts: np.ndarray, a: float, b: float,
                   top_k: int = 5, min_abs: float = 1e-4) -> list[Explanation]:
    """Each lead's ``Explanation`` from the rules model's point parts (``RULE_PART_GROUPS``
    order) and its Platt map ``p = sigmoid(a * points + b)``."""
    ids = list(contact_ids)
    if not ids:
        return []
    parts = np.asarray(parts, dtype=np.float64)
    groups = np.zeros((len(ids), len(GROUPS)))
    for j, (_, group) in enumerate(RULE_PART_GROUPS):
        groups[:, _G[group]] += a * parts[:, j]
    logit = a * parts.sum(axis=1) + b
    points = expit(logit)[:, None] - expit(logit[:, None] - groups)
    raw = feature_table(graph, ids, ("activity",))
    texts = _Texts(graph, ids, {c: raw.num[:, j] for j, c in enumerate(raw.num_cols)})
    return [sign_split([Factor(texts.of(g, i, points[i, j]), g, float(points[i, j]))
                        for j, g in enumerate(GROUPS) if groups[i, j] != 0.0], top_k, min_abs)
            for i in range(len(ids))]


# ------------------------------------------------------------------ the words
def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class _Texts:
    """What the graph says about each lead as of t, in each group's words: ``of(group, i, points)``
    is the text for lead ``i`` when the group moves its score by ``points`` ("" = nothing true
    to say in that direction: the factor is left out)."""

    def __init__(self, graph: Subgraph, ids: list[str], facts: dict[str, np.ndarray]):
        self.view = View(graph)
        self.rows = self.view.rows(ids)
        self.contacts, self.companies = self.view.attrs_of(self.rows)
        self.facts = facts
        self.as_of = graph.as_of
        self._orders = None

    def of(self, group: str, i: int, points: float) -> str:
        raises, lowers = getattr(self, "_" + group)(i)
        return raises if points >= 0 else lowers

    def _row(self, i: int, names: Sequence[str]) -> dict:
        return {n: float(self.facts[n][i]) for n in names}

    # ---- the lead's own evidence: the GNN's words (``model.factors``)
    def _own_activity(self, i: int) -> tuple[str, str]:
        return _activity_texts(self._row(i, ("n_high_intent_14d", "n_all_30d", "n_all_ever", "has_activity",
                                             "days_since_last_activity")))

    def _silence(self, i: int) -> tuple[str, str]:
        return _silence_texts(float(self.facts["days_since_last_activity"][i]))

    def _steps_order(self, i: int) -> tuple[str, str]:
        text = _steps_order_text(float(self.facts["order_pricing_before_demo"][i]))
        return text, text

    def _career(self, i: int) -> tuple[str, str]:
        text = _career_text(self._row(i, CAREER_COLUMNS)) or ""
        return text, text

    def _title(self, i: int) -> tuple[str, str]:
        c = self.contacts[i]
        bits = [f"title: {t}"] if (t := c.get("title") or seniority(c)) else []
        if c.get("department"):
            bits.append(f"department: {c['department']}")
        text = ", ".join(bits) or "no title on record"
        return text, text

    def _source(self, i: int) -> tuple[str, str]:
        c = self.contacts[i]
        if not c.get("contact_id"):  # a stub: referenced by its activity, no CRM record (``is_stub``)
            text = "not in the CRM yet (known from its activity only)"
        else:
            text = f"lead source: {c['source']}" if c.get("source") else "no lead source on record"
            created = as_micros(c.get("created_at"))
            if created is not None and created <= self.as_of:
                text += f", created {_ago((self.as_of - created) / MICROS_PER_DAY)}"
        return text, text

    def _firmographics(self, i: int) -> tuple[str, str]:
        k = self.companies[i]
        if not k:
            return "no company on record", "no company on record"
        bits = [str(k["industry"])] if k.get("industry") else []
        if k.get("employees"):
            bits.append(f"{k['employees']} employees")
        text = "company: " + (", ".join(bits) or "industry and size unknown")
        return text, text

    # ---- the account: what the model's account columns count
    def _colleagues(self, i: int) -> tuple[str, str]:
        f = self._row(i, ("acct_contacts", "acct_active30", "acct_active90"))
        n = 0 if np.isnan(f["acct_contacts"]) else int(f["acct_contacts"])
        if not n:
            return "no other contacts known at the account", "no other contacts known at the account"
        a30, a90 = int(f["acct_active30"]), int(f["acct_active90"])
        if a30:
            return (f"{_plural(a30, 'colleague', 'colleagues')} engaged in the last 30 days",
                    f"only {a30} of {n} colleagues engaged in the last 30 days")
        if a90:
            return "colleagues engaged earlier (none in the last 30 days)", "no colleague activity in the last 30 days"
        return (f"{_plural(n, 'colleague', 'colleagues')} at the account (none engaged in 90 days)",
                "no colleague activity in the last 90 days")

    def _account_orders(self, i: int) -> tuple[str, str]:
        f = self._row(i, ("acct_orders_ever", "acct_orders_90d", "own_orders_ever"))
        ever = max(np.nan_to_num(f["acct_orders_ever"]), f["own_orders_ever"])
        if not ever:
            return "no orders at the account yet", "no orders at the account yet"
        n90 = int(np.nan_to_num(f["acct_orders_90d"]))
        recent = f" ({n90} orders in the last 90 days)" if n90 else ""
        return (f"account placed {n90} orders in the last 90 days" if n90 else "account has bought before",
                "account is already a customer" + recent)

    def _peers(self, i: int) -> tuple[str, str]:
        view, r = self.view, self.rows[i]
        k = view.company_of[r] if r >= 0 else -1
        peers = (view.peers[INDUSTRY_PEER][k] | view.peers[SIMILAR_TO][k]) if k >= 0 else set()
        if not peers:
            return "no known industry peers", "no known industry peers"
        if self._orders is None:  # orders in the last 90 days and ever, per company of the graph
            K, cols = temporal.company_order_features(view.g.all_orders(), self.as_of)
            self._orders = K[:, cols.index("orders_90d")], K[:, cols.index("orders_ever")]
        idx = np.fromiter(peers, dtype=np.int64)
        n90, ever = int(self._orders[0][idx].sum()), int(self._orders[1][idx].sum())
        if n90:
            return (f"industry peers bought recently ({n90} orders in 90 days)",
                    f"only {_plural(n90, 'order', 'orders')} at industry peers in 90 days")
        if ever:
            return "industry peers bought before (none in the last 90 days)", "no recent orders at industry peers"
        return "industry peers have not bought yet", "industry peers have not bought yet"

    def _opportunities(self, i: int) -> tuple[str, str]:
        view, r = self.view, self.rows[i]
        k = view.company_of[r] if r >= 0 else -1
        opps = [o for o in view.opps_of.get(int(k), []) if o < len(view.opps)] if k >= 0 else []
        if not opps:
            return "no opportunities at the account", "no opportunities at the account"
        # the most recently updated one's stage (as of t), the last known without dates
        latest = max(opps, key=lambda o: (as_micros(view.opps[o].get("updated_at")) or 0, o))
        stage = view.opps[latest].get("stage") or "unknown"
        text = f"account has {_plural(len(opps), 'opportunity', 'opportunities')} (latest stage: {stage})"
        return text, text
