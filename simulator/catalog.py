"""Fixed vocabularies of the simulated CRM: industries, techs, titles, activity types, pages.

Everything here is data, not behaviour. Index order matters (arrays in the simulator hold
indices into these tuples), so append, never reorder, if you extend a list.
"""
from __future__ import annotations

import numpy as np

INDUSTRIES: tuple[str, ...] = (
    "software", "fintech", "healthcare", "manufacturing", "retail", "logistics", "education",
    "media", "telecom", "energy", "insurance", "real_estate", "government", "biotech",
    "professional_services",
)
#: ideal-customer-profile weight of each industry (what a rule score rewards)
INDUSTRY_FIT = np.array(
    [1.0, 0.9, 0.4, 0.2, 0.1, 0.2, -0.3, -0.1, 0.3, 0.0, 0.5, -0.4, -0.6, 0.3, 0.1]
)
#: relative share of companies per industry
INDUSTRY_SHARE = np.array([14, 9, 8, 8, 7, 6, 5, 5, 5, 4, 5, 4, 3, 4, 8], dtype=float)

COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "NL", "CA", "AU", "SE", "ES", "IN", "BR", "JP")
COUNTRY_SHARE = np.array([40, 10, 9, 7, 4, 6, 4, 3, 4, 6, 4, 3], dtype=float)

TECHS: tuple[str, ...] = (
    "aws", "gcp", "azure", "kubernetes", "docker", "terraform", "snowflake", "databricks",
    "bigquery", "redshift", "postgres", "mysql", "mongodb", "redis", "kafka", "spark",
    "airflow", "dbt", "looker", "tableau", "powerbi", "salesforce", "hubspot", "marketo",
    "zendesk", "intercom", "segment", "mixpanel", "amplitude", "datadog", "splunk", "okta",
    "auth0", "stripe", "shopify", "sap", "oracle", "workday", "slack", "jira",
)
#: technology clusters ("stacks"); a company draws most of its techs from one cluster, so
#: companies sharing a cluster have similar tech stacks (the similar_to relation)
TECH_CLUSTERS: tuple[tuple[int, ...], ...] = (
    (0, 3, 4, 5, 13, 14, 29, 31, 39),        # cloud-native aws
    (1, 8, 3, 17, 16, 18, 29, 38),           # gcp data
    (2, 20, 35, 36, 37, 31, 38),             # microsoft / enterprise
    (6, 7, 15, 16, 17, 19, 9, 10),           # modern data stack
    (21, 22, 23, 24, 25, 26, 38),            # go-to-market
    (26, 27, 28, 33, 34, 12, 13),            # product analytics / commerce
    (10, 11, 12, 13, 4, 30, 32, 39),         # classic web backend
    (35, 36, 37, 20, 30, 9, 11),             # legacy erp
)

SENIORITIES: tuple[str, ...] = ("ic", "manager", "director", "vp", "c_level")
SENIORITY_SHARE = np.array([46, 27, 15, 8, 4], dtype=float)
SENIORITY_FIT = np.array([-0.3, 0.0, 0.3, 0.4, 0.3])
#: seniority index from which a contact is a decision-maker (director, vp, c_level)
DECISION_MAKER_FROM = 2

DEPARTMENTS: tuple[str, ...] = (
    "engineering", "data", "marketing", "sales", "finance", "it", "operations", "product", "hr",
)
DEPARTMENT_SHARE = np.array([20, 10, 14, 14, 7, 10, 10, 9, 6], dtype=float)
#: fit of each department (the buyer persona is data/engineering/it)
DEPARTMENT_FIT = np.array([0.6, 0.8, 0.0, -0.2, -0.3, 0.5, -0.1, 0.3, -0.7])
_DEPT_LABEL = ("Engineering", "Data", "Marketing", "Sales", "Finance", "IT", "Operations",
               "Product", "People")
_TITLE_PATTERNS = (
    ("{d} Specialist", "{d} Analyst", "Senior {d} Engineer", "{d} Associate"),
    ("{d} Manager", "{d} Team Lead", "Senior {d} Manager"),
    ("Director of {d}", "{d} Director", "Senior Director, {d}"),
    ("VP {d}", "Vice President of {d}", "SVP {d}"),
    ("Chief {d} Officer", "Head of {d}", "Chief Executive Officer"),
)


def title_for(seniority: int, department: int, variant: int) -> str:
    """A human title for a seniority and department index (``variant`` picks a pattern)."""
    patterns = _TITLE_PATTERNS[seniority]
    return patterns[variant % len(patterns)].format(d=_DEPT_LABEL[department])


SOURCES: tuple[str, ...] = ("webinar", "organic", "paid_search", "referral", "event", "outbound", "other")
SOURCE_SHARE = np.array([10, 28, 18, 8, 9, 22, 5], dtype=float)

ACTIVITY_TYPES: tuple[str, ...] = (
    "page_view", "email_open", "email_click", "form_fill", "content_download", "webinar_attended",
    "demo_request", "meeting", "call", "trial_signup", "product_usage", "invite_teammate",
)
A_PAGE_VIEW, A_EMAIL_OPEN, A_EMAIL_CLICK, A_FORM_FILL, A_CONTENT, A_WEBINAR = range(6)
A_DEMO, A_MEETING, A_CALL, A_TRIAL, A_USAGE, A_INVITE = range(6, 12)

#: intent weight of each activity type (how much it deepens engagement)
INTENT = np.array([0.15, 0.05, 0.25, 0.6, 0.5, 0.7, 2.0, 2.2, 1.4, 1.8, 0.6, 1.2])

#: activity-type mixes by journey phase: early (awareness), mid (evaluation), late (buying)
PHASE_MIX = np.array([
    [50, 30, 10, 2, 5, 3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [38, 15, 12, 6, 9, 6, 2.5, 2.0, 1.5, 2.5, 1.5, 0.5],
    [30, 6, 6, 4, 4, 3, 7.0, 12.0, 9.0, 6.0, 7.0, 3.0],
])
PHASE_MIX = PHASE_MIX / PHASE_MIX.sum(axis=1, keepdims=True)

PAGES: tuple[str, ...] = (
    "pricing", "product", "docs", "blog", "case_studies", "security", "careers", "home",
    "integrations", "about",
)
P_PRICING = 0
#: page mix of page views per journey phase
PAGE_MIX = np.array([
    [3, 14, 5, 34, 6, 1, 8, 22, 3, 4],
    [14, 20, 12, 14, 12, 5, 2, 12, 7, 2],
    [18, 14, 20, 5, 10, 15, 1, 8, 8, 1],
], dtype=float)
PAGE_MIX = PAGE_MIX / PAGE_MIX.sum(axis=1, keepdims=True)

STAGES: tuple[str, ...] = (
    "prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost",
)
