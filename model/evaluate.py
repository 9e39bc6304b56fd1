"""Offline evaluation: every model on the same temporal split of a CSV export (docs/evaluation.md).

``run_evaluation`` reads the tables (``schemas.tables.read_tables``), builds an in-memory graph
store, places cutoffs and splits them (``model.examples``), keeps at each cutoff the contacts in
the task's population (its ``WHERE`` terms), labels them with the task (``model.task``), fits every model on the training cutoffs (validation cutoffs for early
stopping and calibration only; the hybrid's stacking head is fit there too, on the run's own
fitted GNN and ``lgbm_agg``), scores the test cutoff and prints one table::

    model       AUROC     AP  P@10%  lift@10%   Brier  n_test  positives
    rules       0.712  0.081  0.094      3.61  0.0241    5012        130
    ...
    champion (hybrid)  0.849  ...

The ``champion`` row is the servable family with the best AUROC on the validation cutoffs
(what the registry would promote, ``champion_row``) with its test figures.

The same figures go to ``json_out`` with the task, the split and any notes. A split without
positives, a model that is not installed or fails, never crashes the run: its row says why.

Command line (``leadpulse evaluate`` calls ``main``)::

    leadpulse evaluate --tables DIR [--task "PREDICT ..."] [--json OUT] [--seed N] [--models a,b]
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO, Union

import numpy as np

from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.baselines import BASELINES, make_model
from leadpulse.model.examples import SplitError, SplitOptions, TemporalSplit, build_split, contacts_at, data_span
from leadpulse.model.metrics import score_metrics
from leadpulse.model.task import DEFAULT_TASK, TASK_HELP, Task, TaskError, parse_task
from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.tables import read_tables

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODELS", "EvaluationReport", "run_evaluation", "evaluate_split",
           "format_table", "main"]

#: the models of a default run, in report order ("gnn" and "hybrid" are skipped with a note when
#: torch is missing); the hybrid reuses the run's fitted "gnn" and "lgbm_agg" (``model.hybrid``)
DEFAULT_MODELS: tuple[str, ...] = ("rules", "logreg", "lgbm_flat", "lgbm_agg", "gnn", "hybrid")
#: the families a worker can serve, hence the candidates of the ``champion`` row
FAMILIES: tuple[str, ...] = ("rules", "logreg", "lgbm_flat", "lgbm_agg", "gnn", "hybrid")
#: above this many contacts ``run_evaluation`` rebuilds graphs per model instead of caching them
CACHE_MAX_CONTACTS = 30_000
COLUMNS = ("model", "AUROC", "AP", "P@10%", "lift@10%", "Brier", "n_test", "positives")


@dataclass
class EvaluationReport:
    """What ``run_evaluation`` measured.

    Attributes:
        task: the canonical query.
        split: cutoffs of each split and the gap rule (``SplitPlan.describe``) plus counts;
            with a population, ``population``: its terms and how many of the contacts at the
            test cutoff are in it.
        rows: one dict per model: ``model``, ``status`` (``ok``, ``skipped``, ``failed``),
            the metrics (``auroc``, ``average_precision``, ``precision_at_top``,
            ``lift_at_top``, ``brier``, ``ece``, ``n``, ``positives``), ``fit_seconds``,
            ``notes``, ``valid_auroc`` (a servable family's AUROC on the validation cutoffs),
            ``blend`` (the hybrid's head); last, the ``champion`` row (``champion_row``) with
            ``chosen``, the family it picked.
        notes: run-level explanations (bad rows, degenerate splits).
    """
    task: str
    split: dict
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seed: int = 0

    def row(self, model: str) -> dict:
        return next(r for r in self.rows if r["model"] == model)

    def to_dict(self) -> dict:
        return {"task": self.task, "seed": self.seed, "split": self.split, "rows": self.rows,
                "notes": self.notes}

    def table(self) -> str:
        return format_table(self.rows)


def _fmt(value: Optional[float], digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[dict]) -> str:
    """The one report table: model x AUROC, AP, P@10%, lift@10%, Brier, n_test, positives."""
    lines = [COLUMNS]
    for r in rows:
        name = f"{r['model']} ({r['chosen']})" if r.get("chosen") else r["model"]
        if r["status"] != "ok":
            lines.append((name, r["status"], "", "", "", "", str(r.get("n", "")),
                          str(r.get("positives", ""))))
            continue
        lines.append((name, _fmt(r["auroc"], 3), _fmt(r["average_precision"], 3),
                      _fmt(r["precision_at_top"], 3), _fmt(r["lift_at_top"], 2), _fmt(r["brier"], 4),
                      str(r["n"]), str(r["positives"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _resolve(model: Union[str, LeadModel], fitted: dict[str, LeadModel]) -> tuple[str, Optional[LeadModel], str]:
    """(name, fresh model or None, why it is missing). ``fitted``: the run's models fitted so
    far by name, the parts a hybrid reuses."""
    if isinstance(model, LeadModel):
        return model.name or type(model).__name__, model, ""
    if model in BASELINES:
        return model, make_model(model), ""
    if model in ("gnn", "hybrid"):
        try:
            if model == "gnn":
                return model, importlib.import_module("leadpulse.model.gnn").GNNLeadModel(), ""
            hybrid = importlib.import_module("leadpulse.model.hybrid")
            return model, hybrid.HybridModel(gnn=fitted.get("gnn"), agg=fitted.get("lgbm_agg")), ""
        except Exception as exc:  # missing module, missing torch, or a constructor bug
            return model, None, f"{model} unavailable: {type(exc).__name__}: {exc}"
    return str(model), None, f"unknown model {model!r} (known: {', '.join(BASELINES)}, gnn, hybrid)"


def _predict(model: LeadModel, examples: ExampleSet) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for ex in examples:
        if not ex.contact_ids:
            continue
        scores.append(np.asarray(model.predict_proba(ex.graph(), ex.contact_ids), dtype=np.float64))
        labels.append(np.asarray(ex.labels, dtype=np.float64))
    if not scores:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(labels), np.concatenate(scores)


def evaluate_split(split: TemporalSplit, models: Sequence[Union[str, LeadModel]] = DEFAULT_MODELS,
                   seed: int = 0) -> list[dict]:
    """Fit each model on ``split.train`` (``split.valid`` for early stopping), score ``split.test``."""
    counts = split.counts()
    rows = []
    fitted: dict[str, LeadModel] = {}
    for spec in models:
        name, model, why = _resolve(spec, fitted)
        row: dict = {"model": name, "status": "ok", "n": counts["test"]["examples"],
                     "positives": counts["test"]["positives"], "notes": []}
        rows.append(row)
        if model is None:
            row.update(status="skipped", notes=[why])
            logger.warning("%s: %s", name, why)
            continue
        if counts["train"]["positives"] == 0 or counts["train"]["positives"] == counts["train"]["examples"]:
            row.update(status="skipped", notes=["the training cutoffs have a single class "
                                                f"({counts['train']['positives']} positives of "
                                                f"{counts['train']['examples']}): nothing to learn"])
            continue
        t0 = time.perf_counter()
        try:
            model.fit(split.train, split.valid or None, seed=seed)
            row["fit_seconds"] = round(time.perf_counter() - t0, 2)
            labels, scores = _predict(model, split.test)
            metrics = score_metrics(labels, scores)
        except Exception as exc:
            logger.exception("%s failed", name)
            row.update(status="failed", notes=[f"{type(exc).__name__}: {exc}"])
            continue
        fitted[name] = model
        row.update(metrics.to_dict())
        row["notes"] = list(metrics.notes)
        if name == "hybrid" and getattr(model, "blend", None) is not None:
            row["blend"] = model.blend.to_dict()
    servable = {name: model for name, model in fitted.items() if name in FAMILIES}

    def refit(train: ExampleSet) -> dict[str, LeadModel]:
        again: dict[str, LeadModel] = {}
        for name in servable:
            again[name] = _resolve(name, again)[1].fit(train, split.valid or None, seed=seed)
        return again

    valid, basis = validation_aurocs(split, servable, refit)
    whole = validation_aurocs(split, servable)[0] if basis == CENSORED else {}
    for row in rows:
        if row["model"] in valid:
            row["valid_auroc"] = valid[row["model"]]
        if row["model"] in whole:  # what the fit on the whole labels shows there (optimistic)
            row["valid_auroc_uncensored"] = whole[row["model"]]
    champion = champion_row(rows)
    if champion is not None:
        if split.plan.gap == "relaxed":
            champion["notes"].append(CENSORED_NOTE if basis == CENSORED else RELAXED_NOTE)
        rows.append(champion)
    return rows


#: how ``validation_aurocs`` judged the candidates on a relaxed split
CENSORED = "censored"
CENSORED_NOTE = ("relaxed split: chosen on fits whose training labels stop at the first validation cutoff "
                 "(what was known then), so validation does not favour the models that remember their "
                 "training leads; the validation AUROCs are those fits', every other figure is that of "
                 "the fits on the whole labels, which are the ones kept "
                 "(docs/model.md#the-hybrid-and-the-champion-family)")
RELAXED_NOTE = ("relaxed split: chosen on validation cutoffs that overlap the training labels (their censored "
                "labels have a single class): optimistic for models that remember their training leads "
                "(docs/evaluation.md#the-population)")


def validation_aurocs(split: TemporalSplit, fitted: dict[str, LeadModel],
                      refit: Optional[Callable[[ExampleSet], dict[str, LeadModel]]] = None
                      ) -> tuple[dict[str, Optional[float]], Optional[str]]:
    """The AUROC on the validation cutoffs that candidates are chosen on, by name (None when
    validation is missing or has a single class), and how they were judged.

    On a strict split, ``fitted``'s. On a relaxed one the training labels overlap the
    validation window: a model that remembers its training leads validates well and tests
    poorly (docs/evaluation.md#the-population). There, with ``refit`` and more than one
    candidate, the candidates are fitted again on ``split.train_censored`` (the training
    labels as known at the first validation cutoff) by ``refit`` and judged on those fits
    (how: ``CENSORED``); the models to serve stay ``fitted``.
    """
    judged, basis = fitted, None
    if (refit is not None and split.plan.gap == "relaxed" and len(fitted) > 1 and split.valid
            and _two_classes(split.train_censored)):
        judged, basis = refit(split.train_censored), CENSORED
        logger.info("relaxed split: the %d candidates refitted on labels censored at the first "
                    "validation cutoff to be judged", len(judged))
    if not split.valid:
        return {name: None for name in judged}, basis
    return {name: score_metrics(*_predict(model, split.valid)).auroc for name, model in judged.items()}, basis


def _two_classes(examples: ExampleSet) -> bool:
    labels = np.concatenate([np.asarray(ex.labels, float) for ex in examples]) if examples else np.zeros(0)
    return bool(np.nansum(labels) > 0 and np.nansum(labels) < labels.size)


def champion_row(rows: Sequence[dict]) -> Optional[dict]:
    """The ``champion`` row: the servable family (``FAMILIES``) with the best AUROC on the
    **validation** cutoffs, and its test figures. Chosen as the registry would, never on the
    test cutoff, so its test figure is what a user serving the choice would see (it may fall
    below the run's best model when validation and test disagree). None without candidates."""
    candidates = [r for r in rows if r["model"] in FAMILIES and r["status"] == "ok"
                  and r.get("valid_auroc") is not None]
    if not candidates:
        return None
    best = max(candidates, key=lambda r: r["valid_auroc"])
    metrics = {k: v for k, v in best.items() if k not in ("model", "notes", "fit_seconds", "blend")}
    ranked = ", ".join(f"{r['model']} {r['valid_auroc']:.3f}"
                       for r in sorted(candidates, key=lambda r: -r["valid_auroc"]))
    return {"model": "champion", **metrics, "chosen": best["model"],
            "notes": [f"{best['model']}: the best validation AUROC ({ranked})"]}


def run_evaluation(tables_dir: Union[str, Path], task: Union[str, Task] = DEFAULT_TASK,
                   models: Optional[Sequence[Union[str, LeadModel]]] = None, seed: int = 0,
                   json_out: Optional[Union[str, Path]] = None,
                   options: SplitOptions = SplitOptions(), out: Optional[TextIO] = None,
                   events: Optional[Sequence[InputEvent]] = None,
                   cache_graphs: Optional[bool] = None) -> EvaluationReport:
    """Evaluate ``models`` on the tables in ``tables_dir`` and print one table.

    Args:
        tables_dir: directory of the CSV export (docs/tables.md); missing tables are empty.
        task: a predictive query or a ``Task``. Default ``DEFAULT_TASK`` (orders in 30 days).
        models: model names (``rules``, ``logreg``, ``lgbm_flat``, ``lgbm_agg``, ``gnn``, ``hybrid``) or
            ``LeadModel`` instances. Default ``DEFAULT_MODELS``.
        seed: seed of every model. Default 0.
        json_out: also write the report there as JSON. Default None.
        options: cutoff spacing and split rule. Default ``SplitOptions()``.
        out: where the table is printed. Default ``sys.stdout``.
        events: use these events instead of reading ``tables_dir`` (e.g. a simulated world).
        cache_graphs: keep every cutoff's graph once built, so the models after the first do
            not rebuild it. Default None: only when the export has at most
            ``CACHE_MAX_CONTACTS`` contacts (the cached snapshots of a 100k-contact export
            would take more memory than the store itself); the training cutoffs, bounded by
            ``options.max_train_examples``, are cached either way.

    Raises:
        TaskError: the task is not in the supported query subset.
        SplitError: the data is too short for the task window (the message says by how much).
    """
    from leadpulse.graph_store.memory import MemoryGraphStore  # lazily: the store is a sibling package

    out = out or sys.stdout
    parsed = parse_task(task)
    notes: list[str] = []
    if events is None:
        events, errors = read_tables(tables_dir)
        if errors:
            notes.append(f"{len(errors)} bad rows skipped; first: {errors[0]}")
            logger.warning("%d bad rows skipped; first: %s", len(errors), errors[0])
    store = MemoryGraphStore()
    store.apply(sorted(events, key=lambda e: e.event_time))
    start, end = data_span(events)
    events = None  # the store has them; on a large export the event objects alone are GBs
    cache_train = None
    if cache_graphs is None:
        cache_graphs = len(store.node_ids("contact", end)) <= CACHE_MAX_CONTACTS
        # sampled training cutoffs are bounded subgraphs: cheap to keep, costly to rebuild
        cache_train = cache_graphs or options.max_train_examples is not None
    split = build_split(store, parsed, start, end, options, cache_graphs=cache_graphs,
                        cache_train=cache_train)
    counts = split.counts()
    split_info = {**split.plan.describe(), "counts": counts}
    if parsed.population:
        test_at = split.plan.test[0]
        everyone = len(contacts_at(store, test_at))
        split_info["population"] = {"terms": [term.text() for term in parsed.population],
                                    "test_contacts": everyone, "test_leads": counts["test"]["examples"]}
        notes.append(f"population: {counts['test']['examples']} of {everyone} contacts at the test "
                     "cutoff are leads (every model's train, valid and test examples are the leads "
                     "of their cutoff)")
    if split.plan.gap == "relaxed":
        notes.append("history too short for a gap between train and valid: train label windows "
                     "overlap the validation window (never the test window)")
    for name in ("train", "test"):
        if counts[name]["positives"] == 0:
            notes.append(f"the {name} split has no positives ({counts[name]['examples']} examples): "
                         + ("models cannot be fitted" if name == "train" else
                            "AUROC, AP and lift are undefined")
                         + "; use a longer window, a lower threshold or more history")
    rows = evaluate_split(split, list(models) if models is not None else DEFAULT_MODELS, seed)
    report = EvaluationReport(task=parsed.query(), split=split_info, rows=rows, notes=notes, seed=seed)
    print(f"task: {report.task}", file=out)
    print(f"split ({split.plan.gap} gap): train {counts['train']}, valid {counts['valid']}, "
          f"test {counts['test']} at {split_info['test'][0]}", file=out)
    print(report.table(), file=out)
    for note in notes + [f"{r['model']}: {n}" for r in rows for n in r["notes"]]:
        print(f"note: {note}", file=out)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``leadpulse evaluate``: returns the process exit code (0 ok, 2 bad arguments or data)."""
    parser = argparse.ArgumentParser(prog="leadpulse evaluate",
                                     description="Evaluate lead models on a CSV export.")
    parser.add_argument("--tables", required=True, help="directory of companies.csv, contacts.csv, ...")
    parser.add_argument("--task", default=DEFAULT_TASK, help=TASK_HELP)
    parser.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", help=f"comma-separated subset of {','.join(DEFAULT_MODELS)}")
    args = parser.parse_args(argv)
    if not Path(args.tables).is_dir():
        print(f"error: --tables {args.tables}: not a directory", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        run_evaluation(args.tables, args.task, models=models, seed=args.seed, json_out=args.json_out)
    except TaskError as exc:
        print(f"error: bad --task\n{exc.pointer()}", file=sys.stderr)
        return 2
    except SplitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
