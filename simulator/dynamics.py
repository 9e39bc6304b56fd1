"""The day-by-day process: buying cycles, activities, the conversion hazard, orders, deals.

Everything is vectorised over contacts and accounts; one loop iteration is one day. The
output is column arrays (``Trace``), turned into CRM rows by ``simulator.emit``. Only real
people are simulated here; duplicate contact ids are a recording artefact added later.
People change employer (``simulator.moves``): ``co`` is each person's account *today*.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from leadpulse.simulator import catalog as cat
from leadpulse.simulator.moves import Moves, moves_rng, plan_moves
from leadpulse.simulator.params import SimParams, SizeSpec
from leadpulse.simulator.population import Population

#: the mechanism terms of the log-hazard, each weighed by ``SimParams.w_<term>``
TERMS = ("fit", "velocity", "engagement", "order", "committee", "champion", "peer", "champion_move")
LATENT_FIELDS = (*TERMS, "eta")


def conversion_hazard(eta: np.ndarray, open_: np.ndarray, customer: np.ndarray, p: SimParams,
                      norm_over: np.ndarray) -> np.ndarray:
    """Daily hazard per person: ``rate * exp(eta)`` over its mean on ``norm_over`` for the open
    (so the base rate holds whatever the strengths), the repeat-order rate for customers, else 0."""
    rate = -np.log(1 - p.base_rate_30d) / 30
    repeat = -np.log(1 - p.repeat_rate_30d) / 30
    norm = np.exp(eta[norm_over]).mean() if norm_over.any() else 1.0
    return np.where(open_, rate * np.exp(eta) / norm, np.where(customer, repeat, 0.0))


@dataclass
class Trace:
    """What happened, as columns. Times are (day, second of day) pairs. ``company`` columns
    are the account of the person at that time (job changes move people between accounts)."""
    act: dict[str, np.ndarray] = field(default_factory=dict)   # contact, day, sec, type, page, duration, sentiment, opp, company
    orders: dict[str, np.ndarray] = field(default_factory=dict)  # contact, day, sec, amount, company
    opps: list[tuple] = field(default_factory=list)  # (opp, company, stage, day, sec, contact, amount, created_day, close_day)
    promo_day: np.ndarray | None = None       # day of a contact's promotion, or -1
    promo_sen: np.ndarray | None = None       # seniority right after the promotion
    seniority_start: np.ndarray | None = None
    seniority_end: np.ndarray | None = None
    moves: Moves | None = None                # the planned job changes (moves.plan_moves)
    move_sen: np.ndarray | None = None        # seniority right after the move
    company_start: np.ndarray | None = None   # account of each person at the start
    company_end: np.ndarray | None = None     # ... and at the end
    champion_day: np.ndarray | None = None    # last day a person championed an order at an employer, or -1
    champion_mover: np.ndarray | None = None  # moved after championing an order at the former employer
    first_order_day: np.ndarray | None = None
    latent: dict[str, np.ndarray] = field(default_factory=dict)  # per contact, at conversion or end
    in_cycle_at: np.ndarray | None = None     # per contact: was a committee member at conversion/end
    active_from: np.ndarray | None = None     # first day a contact can be tracked
    cycles: int = 0

    def company_on(self, c: int, day: int) -> int:
        """Account of person ``c`` on ``day`` (a move takes effect at the start of its day)."""
        md = int(self.moves.day[c])
        return int(self.company_end[c]) if 0 <= md <= day else int(self.company_start[c])

    def seniority_on(self, c: int, day: int) -> int:
        """Seniority of person ``c`` on ``day`` (promotion before move on the same day)."""
        pd, md = int(self.promo_day[c]), int(self.moves.day[c])
        if 0 <= md <= day and md >= pd:
            return int(self.move_sen[c])
        if 0 <= pd <= day:
            return int(self.promo_sen[c])
        return int(self.seniority_start[c])


def _grouped_max(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.zeros(n_groups)
    np.maximum.at(out, groups, values)
    return out


class _Opps:
    """Open opportunities per account and the versioned rows they produce."""

    def __init__(self, n_accounts: int, rng: np.random.Generator):
        self.open = np.full(n_accounts, -1)
        self.stage = np.zeros(n_accounts, dtype=np.int64)
        self.contact = np.full(n_accounts, -1)
        self.created = np.zeros(n_accounts, dtype=np.int64)
        self.amount = np.full(n_accounts, np.nan)
        self.rows: list[tuple] = []
        self.next_id = 0
        self.rng = rng

    def _row(self, a: int, stage: int, day: int, sec: int, amount: float) -> None:
        close = self.created[a] + 60 if stage < 4 else day
        self.rows.append((int(self.open[a]), a, stage, day, sec, int(self.contact[a]), amount,
                          int(self.created[a]), int(close)))

    def create(self, a: int, contact: int, day: int, sec: int, amount: float) -> None:
        self.open[a], self.stage[a], self.contact[a], self.created[a] = self.next_id, 0, contact, day
        self.amount[a] = amount
        self.next_id += 1
        self._row(a, 0, day, sec, amount)

    def advance(self, day: int) -> None:
        has = np.flatnonzero((self.open >= 0) & (self.stage < 3))
        for a in has[self.rng.random(len(has)) < 0.05]:
            self.stage[a] += 1
            self._row(a, int(self.stage[a]), day, int(self.rng.integers(8 * 3600, 19 * 3600)), self.amount[a])

    def close(self, a: int, won: bool, day: int, sec: int, amount: float) -> None:
        self._row(a, 4 if won else 5, day, sec, amount)
        self.open[a] = -1


def simulate_days(pop: Population, size: SizeSpec, p: SimParams, rng: np.random.Generator,
                  probe: dict | None = None) -> Trace:
    """Run the days. ``probe`` (optional dict) receives ``{day: (eta, open, terms, dm)}`` per
    day, for analysis. Job changes are planned from a generator derived from ``rng``'s seed
    (``moves.moves_rng``), so ``rng`` draws the same as in a world without them."""
    n, n_co, days = pop.n_contacts, pop.n_companies, size.days
    mv = plan_moves(pop, size, p, moves_rng(rng))
    co = pop.co.copy()          # the account of each person: job changes move people
    sen = pop.seniority.copy()
    sen_start = sen.copy()
    promo_sen = sen.copy()
    move_sen = sen.copy()
    n_ind, n_cl = len(cat.INDUSTRIES), len(cat.TECH_CLUSTERS)
    ind_of, cl_of = pop.industry, pop.cluster
    ind_size = np.bincount(ind_of, minlength=n_ind).astype(float)
    cl_size = np.bincount(cl_of, minlength=n_cl).astype(float)

    # promotions: some contacts move up one seniority level on one day
    promo_day = np.where(rng.random(n) < p.update_rate * 0.5,
                         rng.integers(0, days, n), -1)
    promo_day = np.where((promo_day >= 0) & (promo_day > pop.created_day) & (sen < 4), promo_day, -1)
    # tracked activity may start before the CRM record (anonymous visits later stitched)
    lead_days = np.where(rng.random(n) < p.pre_contact_rate, rng.integers(1, 21, n), 0)
    active_from = pop.created_day - lead_days

    d_short = 0.5 ** (1 / p.velocity_half_life)
    d_long = 0.5 ** (1 / p.engagement_half_life)
    d_mid = 0.5 ** (1 / p.committee_half_life)
    v_short, v_mid, v_long = np.zeros(n), np.zeros(n), np.zeros(n)
    never = -10_000
    last_pricing, dnp_day, pd_day, dp_day = (np.full(n, never) for _ in range(4))
    first_order = np.full(n, -1)
    member = np.zeros(n, dtype=bool)
    in_cycle = np.zeros(n_co, dtype=bool)
    cycle_start = np.zeros(n_co, dtype=np.int64)
    cycle_end = np.zeros(n_co, dtype=np.int64)
    cooldown = np.full(n_co, -1)
    intensity = np.zeros(n_co)
    momentum = rng.normal(0, p.industry_momentum_sd, n_ind)
    ind_orders = np.zeros((days + 1, n_ind))
    cl_orders = np.zeros((days + 1, n_cl))
    co_orders = np.zeros((days + 1, n_co))
    company_fit_z = (pop.company_fit - pop.company_fit.mean()) / (pop.company_fit.std() + 1e-9)
    latent = {k: np.zeros(n) for k in LATENT_FIELDS}
    in_cycle_at = np.zeros(n, dtype=bool)
    opps = _Opps(n_co, rng)
    acts: list[tuple] = []
    ords: list[tuple] = []
    n_cycles = 0
    rho = 0.98
    last_engaged = np.full(n, never)     # last day the 14-day intent was above the threshold
    champion_day = np.full(n, -1)        # last day the person championed an order
    champ_mover = np.zeros(n, dtype=bool)

    for d in range(days):
        promoted = promo_day == d
        sen[promoted] = np.minimum(sen[promoted] + 1, len(cat.SENIORITIES) - 1)
        promo_sen[promoted] = sen[promoted]
        # --- job changes: the person works for the new account from the start of the day
        movers = np.flatnonzero(mv.day == d)
        if len(movers):
            sen[movers] = np.minimum(sen[movers] + mv.step[movers], len(cat.SENIORITIES) - 1)
            move_sen[movers] = sen[movers]
            champ_mover[movers] = champion_day[movers] >= 0
            co[movers] = mv.dest[movers]
            member[movers] = in_cycle[co[movers]] & (mv.join_u[movers] < pop.affinity[movers])
        champ_move_on = champ_mover & (d - mv.day < p.champion_window)
        champ_move_at = np.zeros(n_co, dtype=bool)
        champ_move_at[co[champ_move_on]] = True
        dm = sen >= cat.DECISION_MAKER_FROM
        alive = pop.created_day <= d
        tracked = active_from <= d
        momentum = rho * momentum + rng.normal(0, p.industry_momentum_sd * np.sqrt(1 - rho ** 2), n_ind)

        # --- peer adoption: recent orders at industry peers and same-stack companies, vs expected
        lo = max(0, d - p.peer_window)
        recent_ind = ind_orders[lo:d].sum(0)
        recent_cl = cl_orders[lo:d].sum(0)
        recent_co = co_orders[lo:d].sum(0)
        total = recent_ind.sum()
        peer_ind = recent_ind[ind_of] - recent_co
        peer_cl = recent_cl[cl_of] - recent_co
        exp_ind = total * (ind_size[ind_of] - 1) / max(n_co - 1, 1)
        exp_cl = total * (cl_size[cl_of] - 1) / max(n_co - 1, 1)
        peer = 0.5 * np.log((peer_ind + 1) / (exp_ind + 1)) + 0.5 * np.log((peer_cl + 1) / (exp_cl + 1))

        # --- buying cycles (latent account interest)
        ending = in_cycle & (cycle_end <= d)
        if ending.any():
            for a in np.flatnonzero(ending & (opps.open >= 0)):
                opps.close(a, False, d, int(rng.integers(8 * 3600, 19 * 3600)), opps.amount[a])
            in_cycle[ending] = False
            cooldown[ending] = d + 30
            member[ending[co]] = False
        p_start = p.cycle_start_rate * np.exp(0.3 * company_fit_z + momentum[ind_of] + p.peer_cycle_effect * peer
                                              + p.champion_cycle_effect * champ_move_at)
        starting = (~in_cycle) & (cooldown <= d) & (rng.random(n_co) < np.minimum(p_start, 0.5))
        if starting.any():
            n_cycles += int(starting.sum())
            in_cycle[starting] = True
            cycle_start[starting] = d
            cycle_end[starting] = d + np.maximum(10, rng.gamma(3.0, p.cycle_days / 3, n_co)[starting]).astype(np.int64)
            intensity[starting] = rng.uniform(0.5, 1.5, n_co)[starting]
            join = starting[co]
            member[join] = rng.random(int(join.sum())) < pop.affinity[join]

        # --- activities
        ramp = np.minimum(1.0, 0.3 + (d - cycle_start) / 15.0)
        boost = 1 + p.cycle_boost * (intensity * ramp * in_cycle)[co] * member
        customer = first_order >= 0
        lam = pop.propensity * boost * np.where(customer, 1.5, 1.0) * tracked
        k = rng.poisson(lam)
        who = np.repeat(np.arange(n), k)
        m = len(who)
        day_intent = np.zeros(n)
        if m:
            s = v_long[who] + 1.5 * member[who] + 3.0 * customer[who]
            p_early = 1 - 1 / (1 + np.exp(-(s - 1.0) * 1.5))
            p_late = 1 / (1 + np.exp(-(s - 3.5) * 1.5))
            u = rng.random(m)
            phase = np.where(u < p_early, 0, np.where(u < 1 - p_late, 1, 2))
            typ = (rng.random(m)[:, None] > np.cumsum(cat.PHASE_MIX, 1)[phase][:, :-1]).sum(1)
            page = (rng.random(m)[:, None] > np.cumsum(cat.PAGE_MIX, 1)[phase][:, :-1]).sum(1)
            page = np.where((typ == cat.A_PAGE_VIEW), page, -1)
            sec = rng.integers(6 * 3600, 22 * 3600, m)
            dur = np.full(m, np.nan)
            dur = np.where(typ == cat.A_PAGE_VIEW, np.round(rng.lognormal(3.8, 1.0, m), 1), dur)
            dur = np.where(typ == cat.A_WEBINAR, rng.integers(900, 3600, m), dur)
            dur = np.where(typ == cat.A_MEETING, rng.choice([900, 1800, 2700, 3600], m), dur)
            dur = np.where(typ == cat.A_CALL, rng.integers(60, 1800, m), dur)
            dur = np.where(typ == cat.A_USAGE, rng.integers(60, 7200, m), dur)
            sent = np.where((typ == cat.A_MEETING) | (typ == cat.A_CALL),
                            np.round(np.clip(rng.normal(0.25, 0.4, m), -1, 1), 2), np.nan)
            opp_of = opps.open[co[who]]
            opp_ref = np.where(((typ == cat.A_MEETING) | (typ == cat.A_CALL) | (typ == cat.A_DEMO))
                               & (opp_of >= 0) & (rng.random(m) < 0.8), opp_of, -1)
            np.add.at(day_intent, who, cat.INTENT[typ])
            acts.append((who, np.full(m, d), sec, typ, page, dur, sent, opp_ref, co[who]))

            # order of key steps: pricing -> demo_request vs demo_request -> pricing
            big = 10 ** 9
            is_pr = page == cat.P_PRICING
            is_demo = typ == cat.A_DEMO
            fp, lp, fd = np.full(n, big), np.full(n, -1), np.full(n, big)
            np.minimum.at(fp, who[is_pr], sec[is_pr])
            np.maximum.at(lp, who[is_pr], sec[is_pr])
            np.minimum.at(fd, who[is_demo], sec[is_demo])
            demo_today = fd < big
            pr_today = fp < big
            prior = (last_pricing >= d - 30) | (fp < fd)
            pd_day[demo_today & prior] = d
            fresh_dnp = demo_today & ~prior
            reverse = pr_today & ((dnp_day >= d - 30) | (fresh_dnp & (lp > fd)))
            dp_day[reverse] = d
            dnp_day[fresh_dnp] = d
            last_pricing[pr_today] = d

            # deals: a committee member's demo or meeting opens an opportunity
            trig = (is_demo | (typ == cat.A_MEETING)) & member[who]
            for i in np.flatnonzero(trig):
                a = int(co[who[i]])
                if opps.open[a] < 0 and in_cycle[a] and rng.random() < 0.7:
                    amt = float(np.round(rng.lognormal(np.log(3000) + 0.35 * np.log(pop.employees[a] / 100), 0.5), -2))
                    opps.create(a, int(who[i]), d, int(sec[i]), amt)
        opps.advance(d)
        v_short = v_short * d_short + day_intent
        v_long = v_long * d_long + day_intent
        v_mid = v_mid * d_mid + day_intent
        last_engaged[(v_mid > p.engaged_threshold) & tracked] = d

        # --- conversion hazard
        engaged = (v_mid > p.engaged_threshold) & tracked
        colleagues = np.bincount(co, weights=engaged, minlength=n_co)[co] - engaged
        champ = _grouped_max(np.where(dm | ~tracked, 0.0, v_mid), co, n_co)[co]
        order_on = (d - pd_day) <= p.order_window
        reverse_on = (d - dp_day) <= p.order_window
        terms = {
            "fit": pop.fit,
            "velocity": np.log1p(v_short),
            "engagement": np.log1p(v_long),
            "order": order_on.astype(float),
            "committee": np.log1p(colleagues),
            "champion": np.log1p(champ) * dm,
            "peer": peer[co],
            "champion_move": champ_move_on.astype(float),
        }
        eta = (p.w_fit * terms["fit"] + p.w_velocity * terms["velocity"]
               + p.w_engagement * terms["engagement"] + p.w_order * order_on
               + p.w_order_reverse * reverse_on + p.w_committee * terms["committee"]
               + p.w_champion * terms["champion"] + p.w_peer * terms["peer"]
               + p.w_champion_move * terms["champion_move"]
               + p.w_decision_maker * dm + pop.noise)
        open_ = alive & (first_order < 0)
        if probe is not None:
            probe[d] = (eta.copy(), open_.copy(), dict((k, v.copy()) for k, v in terms.items()), dm.copy())
        hz = conversion_hazard(eta, open_, customer, p, norm_over=open_)
        buy = rng.random(n) < -np.expm1(-hz)
        buyers = np.flatnonzero(buy)
        if len(buyers):
            bsec = rng.integers(7 * 3600, 21 * 3600, len(buyers))
            bco = co[buyers]
            amount = np.round(rng.lognormal(np.log(2500) + 0.35 * np.log(pop.employees[bco] / 100), 0.6), 2)
            ords.append((buyers, np.full(len(buyers), d), bsec, amount, bco))
            # champions: at an account ordering today, everyone but its buyers engaged lately
            ordering = np.zeros(n_co, dtype=bool)
            ordering[bco] = True
            champs = ordering[co] & ~buy & (d - last_engaged <= p.champion_lookback)
            champion_day[champs] = d
            firsts = buyers[first_order[buyers] < 0]
            first_order[firsts] = d
            for key, val in terms.items():
                latent[key][firsts] = val[firsts]
            latent["eta"][firsts] = eta[firsts]
            in_cycle_at[firsts] = member[firsts]
            np.add.at(ind_orders[d], ind_of[bco], 1)
            np.add.at(cl_orders[d], cl_of[bco], 1)
            np.add.at(co_orders[d], bco, 1)
            for b, s_, a, amt in zip(buyers, bsec, bco, amount):
                if opps.open[a] >= 0:
                    opps.close(int(a), True, d, int(s_), float(amt))
                elif rng.random() < 0.6:
                    opps.create(int(a), int(b), d, max(0, int(s_) - 1), float(amt))
                    opps.close(int(a), True, d, int(s_), float(amt))
                if in_cycle[a]:
                    cycle_end[a] = min(cycle_end[a], d + 14)

    still = first_order < 0
    for key, val in terms.items():
        latent[key][still] = val[still]
    latent["eta"][still] = eta[still]
    in_cycle_at[still] = member[still]

    tr = Trace(opps=opps.rows, promo_day=promo_day, promo_sen=promo_sen, seniority_start=sen_start,
               seniority_end=sen, moves=mv, move_sen=move_sen, company_start=pop.co.copy(),
               company_end=co, champion_day=champion_day, champion_mover=champ_mover,
               first_order_day=first_order, latent=latent, in_cycle_at=in_cycle_at, cycles=n_cycles,
               active_from=active_from)
    names = ("contact", "day", "sec", "type", "page", "duration", "sentiment", "opp", "company")
    tr.act = {k: np.concatenate([a[i] for a in acts]) if acts else np.zeros(0, dtype=np.int64)
              for i, k in enumerate(names)}
    onames = ("contact", "day", "sec", "amount", "company")
    tr.orders = {k: np.concatenate([o[i] for o in ords]) if ords else np.zeros(0)
                 for i, k in enumerate(onames)}
    return tr
