"""The prediction task, written as a predictive query (docs/architecture.md#the-prediction-task).

The supported subset::

    PREDICT COUNT(<table>.*, <start>, <end>, DAYS) > <n>
    FOR EACH contacts.contact_id
    [WHERE <term> [AND <term> ...]]

``<table>`` is ``orders`` or ``opportunities``; keywords are case-insensitive, identifiers are
lower-cased, the quoted value is kept as written (``''`` inside quotes is one quote). A
``WHERE`` term is one of

* ``<table>.<column> = '<value>'``: the target filter (at most one), on the target table;
* ``COUNT(<any table>.*, <start>, <end>, DAYS) <op> <n>`` with ``start < end <= 0`` and op one
  of ``= != < <= > >=``: a population term, a count over a past window;
* ``contacts.<field> = '<value>'``: a population term on the contact's record.

The population terms say which contacts are leads at a cutoff (``model.population``): labels,
training examples, evaluation and the stream keep only the contacts for which every one holds
as of t. The canonical text (``Task.query``) puts the target filter first. A label
for contact c at cutoff t is 1 when more than ``n`` target rows fall in the window
``(t + start, t + end]`` (strictly after t), else 0. Labels never look at or before t + start,
features never after t (invariant 1).

What counts as a target row in the window:

* ``orders``: an order whose ``timestamp`` is in the window, placed by the contact
  (``orders.contact_id``), and matching the ``WHERE`` filter on the order's fields.
* ``opportunities``: an opportunity that *enters* the filter in the window: its version as of
  ``t + end`` matches and its version as of ``t + start`` does not (or did not exist). With
  ``WHERE opportunities.stage = 'closed_won'`` that is "won in the window"; without a filter,
  "created in the window". An opportunity is attributed to its ``contact_id`` (as of
  ``t + end``) when it has one, else to every labelled contact of its account (contacts whose
  ``company_id`` as of t is the opportunity's ``company_id``): in B2B the whole buying
  committee of a won account counts as converted.

Example:
    >>> task = parse_task("predict count(orders.*, 0, 30, days) > 0 for each contacts.contact_id")
    >>> (task.table, task.start_days, task.end_days, task.threshold, task.filter)
    ('orders', 0, 30, 0, None)
    >>> parse_task(DEFAULT_TASK) == task
    True
    >>> won = parse_task("PREDICT COUNT(opportunities.*, 0, 60, DAYS) > 0 FOR EACH "
    ...                  "contacts.contact_id WHERE opportunities.stage = 'closed_won'")
    >>> won.filter
    ('stage', 'closed_won')
    >>> open_leads = parse_task("PREDICT COUNT(orders.*, 0, 90, DAYS) > 0 FOR EACH contacts.contact_id "
    ...     "WHERE COUNT(orders.*, -3650, 0, DAYS) = 0 AND COUNT(activities.*, -30, 0, DAYS) > 0")
    >>> [term.text() for term in open_leads.population]
    ['COUNT(orders.*, -3650, 0, DAYS) = 0', 'COUNT(activities.*, -30, 0, DAYS) > 0']
    >>> parse_task("PREDICT COUNT(leads.*, 0, 30, DAYS) > 0 FOR EACH contacts.contact_id")
    Traceback (most recent call last):
    ...
    leadpulse.model.task.TaskError: at position 14: expected a target table (orders or opportunities), got 'leads'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from leadpulse.graph_store.base import GraphStore, Subgraph
from leadpulse.model.population import COUNT_TABLES, OPS, CountTerm, FieldTerm, Term, as_text, hops_needed, members
from leadpulse.schemas.events import Contact, InputEvent, Opportunity, Order
from leadpulse.schemas.timeutil import MICROS_PER_DAY, to_micros
from leadpulse.schemas.types import PLACED

__all__ = ["DEFAULT_TASK", "TASK_HELP", "TARGET_TABLES", "Task", "TaskError", "parse_task", "CountTerm", "FieldTerm"]

DEFAULT_TASK = "PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH contacts.contact_id"

#: what ``--task`` accepts, for the CLI help of the commands that take one
TASK_HELP = (f'predictive query (default: "{DEFAULT_TASK}"). Optional population: FOR EACH '
             "contacts.contact_id WHERE <term> [AND <term> ...], a term being COUNT(<table>.*, <start>, "
             "<end>, DAYS) <op> <n> over a past window of companies, contacts, activities, opportunities "
             "or orders (start < end <= 0, op one of = != < <= > >=), contacts.<field> = '<value>', or "
             "the target filter <target table>.<column> = '<value>'; see docs/model.md")
#: target table -> (node type in the graph, event model)
TARGET_TABLES = {"orders": ("order", Order), "opportunities": ("opportunity", Opportunity)}
#: longest window we accept (ten years): anything longer is a typo
MAX_DAYS = 3650


class TaskError(ValueError):
    """A query outside the supported subset. ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int, query: str = ""):
        self.message, self.position, self.query = message, position, query
        super().__init__(f"at position {position}: {message}")

    def pointer(self) -> str:
        """The query with a caret under the offending position (for CLI messages)."""
        return f"{self.query}\n{' ' * self.position}^ {self.message}"


@dataclass(frozen=True)
class Task:
    """A parsed predictive query. Build with ``parse_task``; see the module doc for semantics.

    Args:
        table: target table, ``"orders"`` or ``"opportunities"``.
        start_days: window start, days after the cutoff (exclusive). Default 0.
        end_days: window end, days after the cutoff (inclusive). Default 30.
        threshold: the label is ``count > threshold``. Default 0.
        filter: optional ``(column, value)`` equality on the target table.
        entity: the entity each example is about (only ``"contacts.contact_id"``).
        population: the ``WHERE`` terms that say which contacts are leads at a cutoff
            (``model.population.CountTerm`` / ``FieldTerm``, all must hold). Default ``()``:
            every contact.
    """
    table: str = "orders"
    start_days: int = 0
    end_days: int = 30
    threshold: int = 0
    filter: Optional[tuple[str, str]] = None
    entity: str = "contacts.contact_id"
    population: tuple[Term, ...] = ()

    @property
    def window_micros(self) -> tuple[int, int]:
        """``(start, end)`` of the label window as offsets from the cutoff, in micros."""
        return self.start_days * MICROS_PER_DAY, self.end_days * MICROS_PER_DAY

    @property
    def horizon(self) -> int:
        """How far after the cutoff a label looks (micros): labels at t need data up to t + this."""
        return self.end_days * MICROS_PER_DAY

    def query(self) -> str:
        """The canonical query text (``parse_task(task.query()) == task``)."""
        text = (f"PREDICT COUNT({self.table}.*, {self.start_days}, {self.end_days}, DAYS) > "
                f"{self.threshold} FOR EACH {self.entity}")
        terms = [term.text() for term in self.population]
        if self.filter:
            value = self.filter[1].replace("'", "''")
            terms.insert(0, f"{self.table}.{self.filter[0]} = '{value}'")
        if terms:
            text += " WHERE " + " AND ".join(terms)
        return text

    def __str__(self) -> str:
        return self.query()

    # ------------------------------------------------------------------ population
    @property
    def population_hops(self) -> int:
        """Hops of the subgraph the population needs around a contact (0 without one)."""
        return hops_needed(self.population)

    def in_population(self, store: GraphStore, contact_ids: Sequence[str], as_of: int,
                      graph: Optional[Subgraph] = None) -> np.ndarray:
        """Boolean array: which of ``contact_ids`` are leads at ``as_of`` (``model.population``).

        ``graph``, when given, is a ``Subgraph`` as of ``as_of`` holding the contacts with at
        least ``population_hops`` hops around them (a snapshot, or the subgraph a scorer reads
        anyway); by default the store is read. Reads nothing after ``as_of``.
        """
        return members(self.population, store, contact_ids, as_of, graph)

    # ------------------------------------------------------------------ labels
    def label(self, source: Union[GraphStore, Iterable[InputEvent]], contact_ids: Sequence[str],
              as_of: int, until: Optional[int] = None) -> np.ndarray:
        """0/1 labels (float64) of ``contact_ids`` for cutoff ``as_of`` (micros).

        ``source`` is a ``GraphStore`` (as-of reads at t + start and t + end) or the raw
        events (a brute-force reference: a scan of every event). Both give the same labels.
        ``until`` censors the label window at that time (its end becomes ``min(t + end,
        until)``): what the labels looked like then. Default None: the whole window.
        """
        window = self._window(as_of, until)
        counts = (self._count_store(source, contact_ids, as_of, window) if isinstance(source, GraphStore)
                  else self._count_events(list(source), contact_ids, as_of, window))
        return np.array([float(counts.get(c, 0) > self.threshold) for c in contact_ids])

    def _matches(self, attrs: Optional[dict]) -> bool:
        if attrs is None:
            return False
        if self.filter is None:
            return True
        column, value = self.filter
        got = attrs.get(column)
        return got is not None and as_text(got) == value

    def _window(self, as_of: int, until: Optional[int]) -> tuple[int, int]:
        lo, hi = (as_of + d for d in self.window_micros)
        return lo, hi if until is None else min(hi, until)

    def _count_store(self, store: GraphStore, contact_ids: Sequence[str], as_of: int,
                     window: tuple[int, int]) -> dict[str, int]:
        lo, hi = window
        counts: dict[str, int] = {}
        if self.table == "orders":
            for cid in contact_ids:
                n = 0
                for oid, when in store.neighbors(PLACED, cid, hi):
                    if when > lo and (self.filter is None or self._matches(store.node("order", oid, hi))):
                        n += 1
                if n:
                    counts[cid] = n
            return counts
        by_company: dict[str, list[str]] = {}
        for cid in contact_ids:
            attrs = store.node("contact", cid, as_of) or {}
            if attrs.get("company_id"):
                by_company.setdefault(str(attrs["company_id"]), []).append(cid)
        for oid in store.node_ids("opportunity", hi):
            end_attrs = store.node("opportunity", oid, hi)
            if self._matches(end_attrs) and not self._matches(store.node("opportunity", oid, lo)):
                self._attribute(end_attrs, contact_ids, by_company, counts)
        return counts

    def _count_events(self, events: list[InputEvent], contact_ids: Sequence[str], as_of: int,
                      window: tuple[int, int]) -> dict[str, int]:
        lo, hi = window
        counts: dict[str, int] = {}
        wanted = set(contact_ids)
        if self.table == "orders":
            seen: set[str] = set()
            for ev in events:
                if (isinstance(ev, Order) and ev.contact_id in wanted and ev.order_id not in seen
                        and lo < to_micros(ev.timestamp) <= hi and self._matches(_fields(ev))):
                    seen.add(ev.order_id)
                    counts[ev.contact_id] = counts.get(ev.contact_id, 0) + 1
            return counts
        company_of = _latest_versions((e for e in events if isinstance(e, Contact)), "contact_id", as_of)
        by_company: dict[str, list[str]] = {}
        for cid in contact_ids:
            if cid in company_of:
                by_company.setdefault(company_of[cid].company_id, []).append(cid)
        opps = [e for e in events if isinstance(e, Opportunity)]
        at_end = _latest_versions(opps, "opportunity_id", hi)
        at_start = _latest_versions(opps, "opportunity_id", lo)
        for oid in sorted(at_end):
            end_attrs = _fields(at_end[oid])
            start = at_start.get(oid)
            if self._matches(end_attrs) and not self._matches(_fields(start) if start else None):
                self._attribute(end_attrs, contact_ids, by_company, counts)
        return counts

    @staticmethod
    def _attribute(opp: dict, contact_ids: Sequence[str], by_company: dict[str, list[str]],
                   counts: dict[str, int]) -> None:
        owner = opp.get("contact_id")
        targets = ([str(owner)] if owner else by_company.get(str(opp.get("company_id")), []))
        for cid in targets:
            counts[cid] = counts.get(cid, 0) + 1


def _fields(event: InputEvent) -> dict:
    return {**event.__dict__, **(event.model_extra or {})}


def _latest_versions(events: Iterable[InputEvent], key: str, as_of: int) -> dict:
    """Per entity id, the version with the greatest event time <= as_of."""
    out: dict = {}
    for ev in events:
        t = to_micros(ev.event_time)
        if t > as_of:
            continue
        k = getattr(ev, key)
        if k not in out or to_micros(out[k].event_time) <= t:
            out[k] = ev
    return out


# ------------------------------------------------------------------------ parser
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>=|<=|!=|[(),.*>=<;])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, number, string, op, end
    text: str
    pos: int


def _tokenize(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            if query[pos] == "'":
                raise TaskError("unterminated quoted value", pos, query)
            raise TaskError(f"unexpected character {query[pos]!r}", pos, query)
        if m.lastgroup != "ws":
            toks.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    toks.append(_Tok("end", "", len(query)))
    return toks


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.toks = _tokenize(query)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, expected: str, tok: Optional[_Tok] = None) -> TaskError:
        tok = tok or self.peek()
        got = "end of query" if tok.kind == "end" else repr(tok.text)
        return TaskError(f"expected {expected}, got {got}", tok.pos, self.query)

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> None:
        tok = self.peek()
        if tok.kind != "ident" or tok.text.upper() != word:
            raise self.fail(word)
        self.next()

    def op(self, symbol: str) -> None:
        tok = self.peek()
        if tok.kind != "op" or tok.text != symbol:
            raise self.fail(f"'{symbol}'")
        self.next()

    def ident(self, what: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "ident":
            raise self.fail(what)
        return self.next()

    def integer(self, what: str, minimum: int = 0) -> int:
        tok = self.peek()
        if tok.kind != "number":
            raise self.fail(what)
        value = int(tok.text)
        if value < minimum or value > MAX_DAYS * 1000:
            raise TaskError(f"{what} must be between {minimum} and {MAX_DAYS * 1000}, got {value}",
                            tok.pos, self.query)
        self.next()
        return value

    def parse(self) -> Task:
        self.keyword("PREDICT")
        self.keyword("COUNT")
        self.op("(")
        table_tok = self.ident("a target table (orders or opportunities)")
        table = table_tok.text.lower()
        if table not in TARGET_TABLES:
            raise self.fail("a target table (orders or opportunities)", table_tok)
        self.op(".")
        self.op("*")
        self.op(",")
        start, end = self.window(lambda: self.integer("window start (days, >= 0)"),
                                 lambda: self.integer("window end (days)", minimum=1), MAX_DAYS)
        tok = self.peek()
        if tok.kind != "op" or tok.text != ">":
            raise self.fail("'>' (only COUNT(...) > n is supported)")
        self.next()
        threshold = self.integer("a non-negative integer threshold")
        self.keyword("FOR")
        self.keyword("EACH")
        ent_tok = self.peek()
        ent_table = self.ident("contacts.contact_id").text.lower()
        self.op(".")
        ent_col = self.ident("contacts.contact_id").text.lower()
        if (ent_table, ent_col) != ("contacts", "contact_id"):
            raise TaskError(f"expected contacts.contact_id (the only entity), got "
                            f"{ent_table}.{ent_col}", ent_tok.pos, self.query)
        flt, population = self.where(table) if self.peek().kind == "ident" else (None, ())
        if self.peek().kind == "op" and self.peek().text == ";":
            self.next()
        if self.peek().kind != "end":
            raise self.fail("AND or end of query" if flt or population else "WHERE or end of query")
        return Task(table=table, start_days=start, end_days=end, threshold=threshold, filter=flt,
                    population=population)

    def where(self, table: str) -> tuple[Optional[tuple[str, str]], tuple[Term, ...]]:
        """``WHERE <term> [AND <term> ...]``: the target filter (at most one) and the population."""
        self.keyword("WHERE")
        flt: Optional[tuple[str, str]] = None
        population: list[Term] = []
        while True:
            begin = self.i
            try:
                term = self.term(table)
            except TaskError as exc:
                raise TaskError(f"bad WHERE term {self.term_text(begin)!r}: {exc.message}", exc.position,
                                self.query) from None
            if isinstance(term, tuple):
                if flt is not None:
                    raise TaskError(f"bad WHERE term {self.term_text(begin)!r}: only one filter on the "
                                    f"target table {table!r}", self.toks[begin].pos, self.query)
                flt = term
            else:
                population.append(term)
            tok = self.peek()
            if tok.kind != "ident" or tok.text.upper() != "AND":
                return flt, tuple(population)
            self.next()

    def term_text(self, begin: int) -> str:
        """The query text of the WHERE term starting at token ``begin`` (up to AND or the end)."""
        depth, i = 0, begin
        while self.toks[i].kind != "end":
            tok = self.toks[i]
            if tok.kind == "op" and tok.text in "()":
                depth += 1 if tok.text == "(" else -1
            elif depth <= 0 and i > begin and tok.kind == "ident" and tok.text.upper() == "AND":
                break
            elif tok.kind == "op" and tok.text == ";":
                break
            i += 1
        start = self.toks[begin].pos
        stop = self.toks[i - 1].pos + len(self.toks[i - 1].text) if i > begin else start
        return self.query[start:stop] or "(nothing)"

    def term(self, table: str) -> Union[tuple[str, str], Term]:
        tok = self.peek()
        if tok.kind == "ident" and tok.text.upper() == "COUNT":
            return self.count_term()
        what = f"COUNT(<table>.*, <start>, <end>, DAYS) <op> <n>, contacts.<field> = '<value>' or {table}.<column> = '<value>'"
        if tok.kind != "ident":
            raise self.fail(what)
        where_table = tok.text.lower()
        if where_table not in (table, "contacts"):
            raise TaskError(f"expected {what}; {where_table!r} is neither the target table {table!r} "
                            f"nor contacts", tok.pos, self.query)
        self.next()
        self.op(".")
        col_tok = self.ident("a column name")
        column = col_tok.text.lower()
        if where_table == table:
            model = TARGET_TABLES[table][1]
            if column not in model.model_fields:
                known = ", ".join(model.model_fields)
                raise TaskError(f"unknown column {table}.{column} (known: {known})", col_tok.pos, self.query)
        elif column == "contact_id":
            raise TaskError("contacts.contact_id cannot be filtered: it is the entity", col_tok.pos, self.query)
        tok = self.peek()
        if tok.kind != "op" or tok.text != "=":
            raise self.fail("'=' (only equality filters are supported)")
        self.next()
        val = self.peek()
        if val.kind != "string":
            raise self.fail("a quoted value like 'closed_won'")
        self.next()
        value = val.text[1:-1].replace("''", "'")
        return (column, value) if where_table == table else FieldTerm(column, value)

    def count_term(self) -> CountTerm:
        self.keyword("COUNT")
        self.op("(")
        tables = ", ".join(COUNT_TABLES)
        table_tok = self.ident(f"a table ({tables})")
        table = table_tok.text.lower()
        if table not in COUNT_TABLES:
            raise self.fail(f"a table ({tables})", table_tok)
        self.op(".")
        self.op("*")
        self.op(",")
        start, end = self.window(lambda: self.signed("window start (days, < 0)", -MAX_DAYS, -1),
                                 lambda: self.signed("window end (days, <= 0)", -MAX_DAYS, 0))
        tok = self.peek()
        if tok.kind != "op" or tok.text not in OPS:
            raise self.fail("a comparison (= != < <= > >=)")
        self.next()
        n = self.integer("a non-negative integer count")
        return CountTerm(table, start, end, tok.text, n)

    def window(self, read_start, read_end, max_end: Optional[int] = None) -> tuple[int, int]:
        """``<start>, <end>, DAYS)`` of a COUNT (the target's, or a population term's): the
        bounds read by the given parsers, end after start."""
        start = read_start()
        self.op(",")
        end_tok = self.peek()
        end = read_end()
        if end <= start:
            raise TaskError(f"window end ({end}) must be greater than its start ({start})",
                            end_tok.pos, self.query)
        if max_end is not None and end > max_end:
            raise TaskError(f"window end must be at most {max_end} days", end_tok.pos, self.query)
        self.op(",")
        unit = self.ident("DAYS")
        if unit.text.upper() not in ("DAYS", "DAY"):
            raise self.fail("DAYS (the only supported unit)", unit)
        self.op(")")
        return start, end

    def signed(self, what: str, minimum: int, maximum: int) -> int:
        tok = self.peek()
        if tok.kind != "number":
            raise self.fail(what)
        value = int(tok.text)
        if not minimum <= value <= maximum:
            raise TaskError(f"{what} must be between {minimum} and {maximum}, got {value} (a population "
                            f"looks back from the cutoff: start < end <= 0)", tok.pos, self.query)
        self.next()
        return value


def parse_task(query: Union[str, Task]) -> Task:
    """Parse a predictive query (see the module doc); a ``Task`` is returned unchanged.

    Raises:
        TaskError: the query is outside the supported subset; the message says where and what
            was expected.
    """
    if isinstance(query, Task):
        return query
    if not isinstance(query, str) or not query.strip():
        raise TaskError("expected PREDICT, got an empty query", 0, str(query or ""))
    return _Parser(query).parse()
