"""Turning the simulated trace into CRM rows, with the mess a real CRM export has.

Mess added here (strengths in ``SimParams``): missing optional fields, duplicate contacts
(one person under two contact ids, activities and orders split between them), versioned
contact and company rows (promotions, field fixes, head-count changes), activity rows
delivered twice, and late arrival. A job change (``simulator.moves``) is a versioned contact
row too: the same contact id with the new company_id, at the move. Each table is returned in *arrival order*: a row's
position is its event time plus a delivery delay, so late rows sit after rows with later
event times. Consumers must order by event time themselves (``schemas.tables.read_tables``
does).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from leadpulse.schemas.events import Activity, Company, Contact, Opportunity, Order
from leadpulse.simulator import catalog as cat
from leadpulse.simulator.dynamics import LATENT_FIELDS, Trace
from leadpulse.simulator.params import SimParams, SizeSpec
from leadpulse.simulator.population import Population

DAY_S = 86_400


@dataclass
class Emitted:
    companies: list[Company]
    contacts: list[Contact]
    activities: list[Activity]
    opportunities: list[Opportunity]
    orders: list[Order]
    labels: list[dict]
    n_duplicates: int


class _Clock:
    def __init__(self, params: SimParams):
        self.start = params.start

    def at(self, day: int, sec: int):
        return self.start + timedelta(seconds=int(day) * DAY_S + int(sec))


def _arrival_order(rng: np.random.Generator, seconds: np.ndarray, late_rate: float) -> np.ndarray:
    """Permutation putting rows in delivery order (event time + delay, late ones days late)."""
    n = len(seconds)
    delay = rng.integers(0, 120, n).astype(np.float64)
    late = rng.random(n) < late_rate
    delay[late] = rng.exponential(3 * DAY_S, int(late.sum())) + 3600
    return np.lexsort((np.arange(n), seconds + delay))


def _keep(rng: np.random.Generator, n: int, missing: float) -> np.ndarray:
    return rng.random(n) >= min(missing, 1.0)


def emit(pop: Population, tr: Trace, size: SizeSpec, p: SimParams, rng: np.random.Generator) -> Emitted:
    clock = _Clock(p)
    m = p.missing_rate

    # ---------------------------------------------------------------- companies
    co_ids = [f"co_{a:06d}" for a in range(pop.n_companies)]
    keep = {f: _keep(rng, pop.n_companies, m * s) for f, s in
            (("industry", 0.5), ("employees", 0.8), ("revenue", 3.0), ("tech", 1.0), ("country", 0.5))}
    co_rows: list[tuple[int, Company]] = []
    resize = rng.random(pop.n_companies) < 0.2
    resize_day = rng.integers(0, size.days, pop.n_companies)
    factor = rng.uniform(0.8, 1.5, pop.n_companies)
    for a in range(pop.n_companies):
        versions = [(int(pop.company_day[a]), int(pop.employees[a]), keep["employees"][a])]
        if resize[a]:
            versions.append((int(resize_day[a]), int(max(1, round(pop.employees[a] * factor[a]))), True))
        for day, emp, has_emp in versions:
            sec = int(rng.integers(0, DAY_S))
            co_rows.append((day * DAY_S + sec, Company(
                company_id=co_ids[a], updated_at=clock.at(day, sec), name=pop.company_name[a],
                industry=cat.INDUSTRIES[pop.industry[a]] if keep["industry"][a] else None,
                employees=emp if has_emp else None,
                revenue=float(pop.revenue[a]) if keep["revenue"][a] else None,
                tech_stack=[cat.TECHS[t] for t in pop.tech[a]] if keep["tech"][a] else None,
                country=cat.COUNTRIES[pop.country[a]] if keep["country"][a] else None,
            )))

    # ---------------------------------------------------------------- people and duplicates
    n = pop.n_contacts
    dup = rng.random(n) < p.duplicate_rate
    dup_person = np.flatnonzero(dup)
    first_day = np.maximum(pop.created_day[dup_person], 0)
    dup_day = np.minimum(first_day + rng.integers(1, 90, len(dup_person)), size.days - 1)
    n_ids = n + len(dup_person)
    perm = rng.permutation(n_ids)
    ct_ids = [f"ct_{i:06d}" for i in perm]
    person_of = np.concatenate([np.arange(n), dup_person])  # id index -> person
    dup_index = np.full(n, -1)
    dup_index[dup_person] = n + np.arange(len(dup_person))
    dup_from = np.full(n, size.days + 1)
    dup_from[dup_person] = dup_day

    kt = {f: _keep(rng, n_ids, m * s) for f, s in
          (("title", 1.0), ("seniority", 1.2), ("department", 1.5), ("source", 1.0), ("created", 1.5))}
    ct_rows: list[tuple[int, Contact]] = []

    mv = tr.moves

    def contact_row(i: int, day: int, sec: int, sen: int, variant: int, source: int, created, fill: bool) -> None:
        c = person_of[i]
        if 0 <= mv.day[c] <= day:   # after a job change: the new account, maybe a new title wording
            variant = int(mv.variant[c]) + (variant - int(pop.title_variant[c]))
        ct_rows.append((day * DAY_S + sec, Contact(
            contact_id=ct_ids[i], company_id=co_ids[tr.company_on(c, day)], updated_at=clock.at(day, sec),
            title=cat.title_for(sen, pop.department[c], variant) if (kt["title"][i] or fill) else None,
            department=cat.DEPARTMENTS[pop.department[c]] if (kt["department"][i] or fill) else None,
            seniority=cat.SENIORITIES[sen] if (kt["seniority"][i] or fill) else None,
            source=cat.SOURCES[source] if (kt["source"][i] or fill) else None,
            created_at=created if kt["created"][i] else None,
        )))

    fix = rng.random(n_ids) < p.update_rate * 0.5
    fix_day = rng.integers(0, size.days, n_ids)
    for i in range(n_ids):
        c = person_of[i]
        is_dup = i >= n
        day0 = int(dup_day[i - n]) if is_dup else int(pop.created_day[c])
        sec0 = int(rng.integers(0, DAY_S))
        created = clock.at(day0, sec0)
        variant = int(pop.title_variant[c]) + (1 + int(rng.integers(0, 3)) if is_dup else 0)
        source = int(rng.integers(0, len(cat.SOURCES))) if is_dup else int(pop.source[c])
        pd = int(tr.promo_day[c])
        contact_row(i, day0, sec0, tr.seniority_on(c, day0), variant, source, created, False)
        if pd >= 0 and pd > day0:
            contact_row(i, pd, int(rng.integers(0, DAY_S)), tr.seniority_on(c, pd), variant, source, created, False)
        md = int(mv.day[c])
        if md >= 0 and md > day0:   # the job change, synced in the night before the day's activity
            contact_row(i, md, int(mv.sec[c, int(is_dup)]), tr.seniority_on(c, md), variant, source, created, False)
        if fix[i] and fix_day[i] > day0:
            contact_row(i, int(fix_day[i]), int(rng.integers(0, DAY_S)), tr.seniority_on(c, int(fix_day[i])),
                        variant, source, created, True)

    # ---------------------------------------------------------------- activities
    A = tr.act
    n_act = len(A["contact"])
    who = A["contact"].astype(np.int64)
    as_dup = (dup_index[who] >= 0) & (A["day"] >= dup_from[who]) & (rng.random(n_act) < 0.35)
    id_idx = np.where(as_dup, dup_index[who], who)
    order = np.lexsort((A["sec"], A["day"]))  # ids follow event time, like an auto-increment
    secs = A["day"].astype(np.int64) * DAY_S + A["sec"]
    redeliver = np.flatnonzero(rng.random(n_act) < p.redelivery_rate)
    rows_idx = np.concatenate([order, redeliver])
    rank = np.empty(n_act, dtype=np.int64)
    rank[order] = np.arange(n_act)
    row_secs = np.concatenate([secs[order], secs[redeliver] + rng.integers(60, 2 * DAY_S, len(redeliver))])
    arrival = _arrival_order(rng, row_secs, p.late_rate)
    activities: list[Activity] = []
    types, pages = cat.ACTIVITY_TYPES, cat.PAGES
    for r in arrival:
        j = int(rows_idx[r])
        pg, du, se, op = int(A["page"][j]), float(A["duration"][j]), float(A["sentiment"][j]), int(A["opp"][j])
        activities.append(Activity(
            activity_id=f"ac_{rank[j]:08d}", contact_id=ct_ids[id_idx[j]], type=types[A["type"][j]],
            timestamp=clock.at(int(A["day"][j]), int(A["sec"][j])),
            page=pages[pg] if pg >= 0 else None,
            duration_s=None if np.isnan(du) else du,
            sentiment=None if np.isnan(se) else se,
            opportunity_id=f"op_{op:06d}" if op >= 0 else None,
        ))

    # ---------------------------------------------------------------- orders
    order_rows = tr.orders
    n_ord = len(order_rows["contact"])
    owho = order_rows["contact"].astype(np.int64)
    o_dup = (dup_index[owho] >= 0) & (order_rows["day"] >= dup_from[owho]) & (rng.random(n_ord) < 0.15)
    o_id = np.where(o_dup, dup_index[owho], owho)
    o_keep_co = _keep(rng, n_ord, m)
    o_secs = order_rows["day"].astype(np.int64) * DAY_S + order_rows["sec"].astype(np.int64)
    orders: list[Order] = []
    for r in _arrival_order(rng, o_secs, p.late_rate):
        orders.append(Order(
            order_id=f"or_{r:06d}", contact_id=ct_ids[o_id[r]], amount=float(order_rows["amount"][r]),
            timestamp=clock.at(int(order_rows["day"][r]), int(order_rows["sec"][r])),
            company_id=co_ids[order_rows["company"][r]] if o_keep_co[r] else None,
        ))

    # ---------------------------------------------------------------- opportunities
    op_rows = tr.opps
    opp_contact_kept = _keep(rng, max((r[0] for r in op_rows), default=-1) + 1, 2 * m)
    opp_amount_kept = _keep(rng, len(op_rows), 3 * m)
    op_secs = np.array([r[3] * DAY_S + r[4] for r in op_rows], dtype=np.int64)
    opportunities: list[Opportunity] = []
    for r in _arrival_order(rng, op_secs, p.late_rate):
        opp, a, stage, day, sec, contact, amount, created_day, close_day = op_rows[r]
        opportunities.append(Opportunity(
            opportunity_id=f"op_{opp:06d}", company_id=co_ids[a], stage=cat.STAGES[stage],
            updated_at=clock.at(day, sec),
            contact_id=ct_ids[contact] if (contact >= 0 and opp_contact_kept[opp]) else None,
            amount=float(amount) if (stage >= 4 or opp_amount_kept[r]) and not np.isnan(amount) else None,
            created_at=clock.at(created_day, 0), close_date=clock.at(close_day, 0),
        ))

    co_arr = np.array([t[0] for t in co_rows], dtype=np.int64)
    companies = [co_rows[i][1] for i in _arrival_order(rng, co_arr, p.late_rate)]
    ct_arr = np.array([t[0] for t in ct_rows], dtype=np.int64)
    contacts = [ct_rows[i][1] for i in _arrival_order(rng, ct_arr, p.late_rate)]

    labels = _labels(pop, tr, ct_ids, co_ids, person_of, n, o_id, order_rows, clock)
    return Emitted(companies, contacts, activities, opportunities, orders, labels, len(dup_person))


def _labels(pop, tr, ct_ids, co_ids, person_of, n, o_id, order_rows, clock) -> list[dict]:
    n_ids = len(ct_ids)
    first_rec = np.full(n_ids, -1, dtype=np.int64)
    count = np.bincount(o_id, minlength=n_ids) if len(o_id) else np.zeros(n_ids, dtype=np.int64)
    o_secs = order_rows["day"].astype(np.int64) * DAY_S + order_rows["sec"].astype(np.int64)
    for r in np.argsort(o_secs, kind="stable")[::-1]:
        first_rec[o_id[r]] = o_secs[r]
    rows = []
    for i in range(n_ids):
        c = int(person_of[i])
        fo = int(tr.first_order_day[c])
        sen = int(tr.seniority_end[c])
        md = int(tr.moves.day[c])
        row = {
            "contact_id": ct_ids[i],
            "company_id": co_ids[tr.company_end[c]],
            "person_id": ct_ids[c],
            "is_duplicate": int(i >= n),
            "seniority": cat.SENIORITIES[sen],
            "decision_maker": int(sen >= cat.DECISION_MAKER_FROM),
            "first_order_at": clock.at(0, int(first_rec[i])) if first_rec[i] >= 0 else None,
            "n_orders": int(count[i]),
            "person_first_order_day": fo if fo >= 0 else None,
            "committee_member": int(tr.in_cycle_at[c]),
            "moved_day": md if md >= 0 else None,
            "former_company_id": co_ids[tr.company_start[c]] if md >= 0 else None,
            "champion_mover": int(tr.champion_mover[c]),
        }
        for key in LATENT_FIELDS:
            row[key] = round(float(tr.latent[key][c]), 4)
        rows.append(row)
    return rows
