"""The static population: companies and contacts as numpy arrays (indices into catalog)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadpulse.simulator import catalog as cat
from leadpulse.simulator.params import SimParams, SizeSpec

_NAME_A = ("North", "Blue", "Bright", "Iron", "Silver", "Quantum", "Cedar", "Summit", "Vertex",
           "Harbor", "Nova", "Granite", "Lumen", "Pioneer", "Atlas", "Maple", "Orbit", "Crest")
_NAME_B = ("Labs", "Systems", "Works", "Group", "Analytics", "Health", "Logistics", "Capital",
           "Networks", "Foods", "Energy", "Media", "Partners", "Robotics", "Cloud", "Bank")
_NAME_C = ("Inc", "Ltd", "GmbH", "LLC", "AG", "SA", "BV", "Corp")


@dataclass
class Population:
    # companies (index a)
    industry: np.ndarray          # int
    country: np.ndarray           # int
    employees: np.ndarray         # int, true size at start
    revenue: np.ndarray           # float
    cluster: np.ndarray           # int, tech cluster
    tech: list[list[int]]         # tech indices per company
    company_day: np.ndarray       # int, day of the first company row (negative: before start)
    company_fit: np.ndarray       # float
    company_name: list[str]
    # contacts (index c)
    co: np.ndarray                # int, company of each contact
    seniority: np.ndarray         # int
    department: np.ndarray        # int
    source: np.ndarray            # int
    title_variant: np.ndarray     # int
    created_day: np.ndarray       # int (negative: existed before start)
    propensity: np.ndarray        # float, daily activities outside a cycle
    affinity: np.ndarray          # float, probability of joining a buying committee
    fit: np.ndarray               # float, standardised ideal-customer fit
    noise: np.ndarray             # float, persistent unobserved log-hazard effect

    @property
    def n_companies(self) -> int:
        return len(self.industry)

    @property
    def n_contacts(self) -> int:
        return len(self.co)


def _choice(rng: np.random.Generator, share: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(share), size=n, p=share / share.sum())


def contact_fit_raw(company_fit: np.ndarray, seniority: np.ndarray, department: np.ndarray) -> np.ndarray:
    return company_fit + cat.SENIORITY_FIT[seniority] + cat.DEPARTMENT_FIT[department]


def build_population(size: SizeSpec, params: SimParams, rng: np.random.Generator) -> Population:
    """Draw companies and their contacts."""
    n_co = size.companies
    industry = _choice(rng, cat.INDUSTRY_SHARE, n_co)
    country = _choice(rng, cat.COUNTRY_SHARE, n_co)
    employees = np.clip(np.round(rng.lognormal(np.log(180), 1.4, n_co)), 3, 250_000).astype(np.int64)
    revenue = np.round(employees * rng.lognormal(np.log(160_000), 0.5, n_co), -3)
    cluster = rng.integers(0, len(cat.TECH_CLUSTERS), n_co)
    n_tech = rng.integers(2, 9, n_co)
    tech: list[list[int]] = []
    for a in range(n_co):
        own = np.array(cat.TECH_CLUSTERS[cluster[a]])
        k_own = min(len(own), int(np.ceil(n_tech[a] * 0.75)))
        picked = list(rng.choice(own, size=k_own, replace=False))
        while len(picked) < n_tech[a]:
            t = int(rng.integers(0, len(cat.TECHS)))
            if t not in picked:
                picked.append(t)
        tech.append(sorted(int(t) for t in picked))
    company_day = -rng.integers(1, 1100, n_co)
    size_fit = np.where((employees >= 100) & (employees <= 5000), 0.5, -0.3)
    company_fit = cat.INDUSTRY_FIT[industry] + size_fit
    name_idx = rng.integers(0, 10_000, (n_co, 3))
    company_name = [
        f"{_NAME_A[i % len(_NAME_A)]} {_NAME_B[j % len(_NAME_B)]} {_NAME_C[k % len(_NAME_C)]}"
        for i, j, k in name_idx
    ]

    mean = size.contacts_per_company
    sigma = 0.7
    per_co = np.maximum(1, np.round(rng.lognormal(np.log(mean) - sigma ** 2 / 2, sigma, n_co))).astype(np.int64)
    co = np.repeat(np.arange(n_co), per_co)
    n = len(co)
    seniority = _choice(rng, cat.SENIORITY_SHARE, n)
    department = _choice(rng, cat.DEPARTMENT_SHARE, n)
    source = _choice(rng, cat.SOURCE_SHARE, n)
    title_variant = rng.integers(0, 12, n)
    existing = rng.random(n) < 0.65
    created_day = np.where(existing, -rng.integers(1, 540, n), rng.integers(0, size.days, n))
    # a contact's company row always exists before the contact itself
    created_day = np.maximum(created_day, company_day[co] + 1)
    dm = seniority >= cat.DECISION_MAKER_FROM
    # decision-makers are busy: they click less and join fewer evaluation activities
    prop = rng.lognormal(0.0, 0.8, n) * np.where(dm, params.dm_activity, 1.0)
    propensity = params.activity_rate * prop / prop.mean()
    buyer_dept = np.isin(department, (0, 1, 5, 7)).astype(float)
    affinity = params.committee_share * (0.7 + 0.6 * buyer_dept) * rng.uniform(0.6, 1.4, n)
    affinity = np.clip(affinity * np.where(dm, params.dm_activity, 1.0), 0, 0.95)
    raw = contact_fit_raw(company_fit[co], seniority, department)
    fit = (raw - raw.mean()) / (raw.std() + 1e-9)
    noise = rng.normal(0, params.contact_noise, n) + rng.normal(0, params.account_noise, n_co)[co]
    return Population(
        industry=industry, country=country, employees=employees, revenue=revenue, cluster=cluster,
        tech=tech, company_day=company_day, company_fit=company_fit, company_name=company_name,
        co=co, seniority=seniority, department=department, source=source,
        title_variant=title_variant, created_day=created_day, propensity=propensity,
        affinity=affinity, fit=fit, noise=noise,
    )
