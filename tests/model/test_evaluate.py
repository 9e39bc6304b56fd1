"""End to end: a hand-written CSV export through ``run_evaluation`` and the CLI entry point."""
from __future__ import annotations

import doctest
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import leadpulse.model.metrics
from leadpulse.model.base import LeadModel
from leadpulse.model.evaluate import DEFAULT_MODELS, format_table, main, run_evaluation
from leadpulse.model.metrics import score_metrics
from leadpulse.model.task import parse_task

HANDMADE = Path(__file__).parent / "data" / "handmade"
BASELINE_NAMES = ["rules", "logreg", "lgbm_flat", "lgbm_agg"]

pytest.importorskip("leadpulse.graph_store.memory")


def test_metrics_doctests():
    result = doctest.testmod(leadpulse.model.metrics)
    assert result.attempted > 0 and result.failed == 0


def test_metrics_degenerate_cases():
    none = score_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert none.auroc is None and none.average_precision is None and none.lift_at_top is None
    assert none.brier == pytest.approx((0.01 + 0.04 + 0.09) / 3) and none.notes
    assert score_metrics([np.nan, 1, 0], [0.5, 0.9, 0.1]).n == 2
    with pytest.raises(ValueError, match="probabilities"):
        score_metrics([0, 1], [0.5, 1.5])


def _models() -> list:
    """Every model of a default run; the GNN (when importable) on a short schedule, which the
    hybrid reuses."""
    try:
        from leadpulse.model.gnn import GNNLeadModel
        from leadpulse.model.train import TrainOptions
        return BASELINE_NAMES + [GNNLeadModel(TrainOptions.of(epochs=20, patience=5, hidden=32)), "hybrid"]
    except ImportError:
        return BASELINE_NAMES + ["gnn", "hybrid"]  # reported as skipped in the table


def test_handmade_export_end_to_end(tmp_path):
    out = io.StringIO()
    report = run_evaluation(HANDMADE, models=_models(), json_out=tmp_path / "report.json", out=out)
    text = out.getvalue()
    print(text)
    header = text.splitlines()[2]
    assert header.split() == ["model", "AUROC", "AP", "P@10%", "lift@10%", "Brier", "n_test", "positives"]
    assert [r["model"] for r in report.rows] == [*DEFAULT_MODELS, "champion"]
    # the champion: the servable family best on the validation cutoffs, with its test figures
    champion = report.row("champion")
    candidates = [r for r in report.rows[:-1] if r.get("valid_auroc") is not None]
    assert champion["chosen"] == max(candidates, key=lambda r: r["valid_auroc"])["model"]
    assert champion["auroc"] == report.row(champion["chosen"])["auroc"]
    assert f"champion ({champion['chosen']})" in text
    hybrid = report.row("hybrid")
    assert hybrid["status"] == "ok" and hybrid["blend"]["fitted_on"] == "validation", hybrid
    counts = report.split["counts"]
    assert all(counts[s]["positives"] > 0 for s in ("train", "valid", "test")), counts
    assert report.split["gap"] == "strict"
    for name in BASELINE_NAMES:
        row = report.row(name)
        assert row["status"] == "ok", row
        assert row["n"] == 16 and row["positives"] == 3
        assert 0 <= row["auroc"] <= 1 and 0 <= row["brier"] <= 1
        assert name in text
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report.rows))
    assert saved["task"].startswith("PREDICT COUNT(orders.*, 0, 30, DAYS)")
    # the two bad-free runs with one seed print the same table
    again = run_evaluation(HANDMADE, models=BASELINE_NAMES, out=io.StringIO())
    assert format_table([r for r in again.rows if r["model"] != "champion"]) == format_table(
        [report.row(n) for n in BASELINE_NAMES])


def test_opportunity_task_and_missing_tables(tmp_path):
    for name in ("companies", "contacts", "activities", "opportunities"):
        shutil.copy(HANDMADE / f"{name}.csv", tmp_path)
    won = ("PREDICT COUNT(opportunities.*, 0, 30, DAYS) > 0 FOR EACH contacts.contact_id "
           "WHERE opportunities.stage = 'closed_won'")
    report = run_evaluation(tmp_path, task=won, models=["rules", "lgbm_agg"], out=io.StringIO())
    assert "stage = 'closed_won'" in report.task
    assert {r["status"] for r in report.rows} <= {"ok", "skipped"}


def test_no_positives_is_explained_not_a_crash():
    out = io.StringIO()
    report = run_evaluation(HANDMADE, task="PREDICT COUNT(orders.*, 0, 30, DAYS) > 5 FOR EACH "
                                           "contacts.contact_id", models=["rules", "nope"], out=out)
    assert report.row("rules")["status"] == "skipped"
    assert "single class" in report.row("rules")["notes"][0]
    assert report.row("nope")["status"] == "skipped"
    assert any("no positives" in n for n in report.notes)
    assert "note: " in out.getvalue()


def test_bad_rows_are_reported(tmp_path):
    for f in HANDMADE.glob("*.csv"):
        shutil.copy(f, tmp_path)
    with (tmp_path / "orders.csv").open("a") as fh:
        fh.write("or_bad,ct_a1,not-a-number,2025-03-01T00:00:00Z\n")
    report = run_evaluation(tmp_path, models=["rules"], out=io.StringIO())
    assert report.notes and "orders.csv row 10" in report.notes[0]


def test_cli(tmp_path, capsys):
    assert main(["--tables", str(HANDMADE), "--json", str(tmp_path / "r.json"), "--models", "rules,logreg",
                 "--seed", "3"]) == 0
    assert "logreg" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["seed"] == 3
    assert main(["--tables", str(HANDMADE), "--task", "PREDICT SUM(orders.*)"]) == 2
    err = capsys.readouterr().err
    assert "expected COUNT" in err and "^" in err
    assert main(["--tables", str(HANDMADE), "--task",
                 "PREDICT COUNT(orders.*, 0, 365, DAYS) > 0 FOR EACH contacts.contact_id"]) == 2
    assert "days" in capsys.readouterr().err
    assert main(["--tables", str(tmp_path / "missing")]) == 2


class _Recorder(LeadModel):
    """A real (constant) model that keeps the contacts it was fitted on and asked about."""
    name = "recorder"

    def __init__(self):
        self.fitted: list[tuple[int, list[str]]] = []
        self.asked: list[tuple[int, list[str]]] = []

    def fit(self, train, valid=None, seed=0):
        self.fitted = [(ex.as_of, list(ex.contact_ids)) for ex in [*train, *(valid or [])]]
        return self

    def predict_proba(self, graph, contact_ids):
        self.asked.append((graph.as_of, list(contact_ids)))
        return np.full(len(contact_ids), 0.5)

    def save(self, path):  # pragma: no cover - never registered
        raise NotImplementedError

    @classmethod
    def load(cls, path):  # pragma: no cover
        raise NotImplementedError


def test_a_population_restricts_every_models_examples(tmp_path, capsys):
    """``FOR EACH ... WHERE``: each model is fitted and judged on the leads of each cutoff only."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import contacts_at
    from leadpulse.simulator import simulate
    world = simulate("tiny", seed=0)
    query = ("PREDICT COUNT(orders.*, 0, 30, DAYS) > 0 FOR EACH contacts.contact_id "
             "WHERE COUNT(orders.*, -3650, 0, DAYS) = 0 AND COUNT(activities.*, -30, 0, DAYS) > 0")
    task = parse_task(query)
    recorder = _Recorder()
    report = run_evaluation(None, task=query, models=["rules", "logreg", recorder], events=world.all_events(),
                            out=io.StringIO())
    plain = run_evaluation(None, models=["rules"], events=world.all_events(), out=io.StringIO())
    store = MemoryGraphStore()
    store.apply(sorted(world.all_events(), key=lambda e: e.event_time))
    assert report.task == query
    pop = report.split["population"]
    assert pop["terms"] == [t.text() for t in task.population]
    assert 0 < pop["test_leads"] < pop["test_contacts"] == plain.split["counts"]["test"]["examples"]
    assert all(r["n"] == pop["test_leads"] for r in report.rows)
    assert report.row("logreg")["status"] == "ok"
    # every example the recorder saw, fitted or scored, is a lead of its cutoff
    seen = recorder.fitted + recorder.asked
    assert seen and recorder.asked[0][0] == max(t for t, _ in seen)
    for as_of, ids in seen:
        everyone = contacts_at(store, as_of)
        leads = [c for c, ok in zip(everyone, task.in_population(store, everyone, as_of)) if ok]
        assert ids == leads and len(leads) < len(everyone)
    # the CLI says where a bad WHERE term is wrong, naming it (before reading any table)
    assert main(["--tables", str(tmp_path), "--task", query.replace("-30, 0, DAYS) > 0", "-30, 7, DAYS) > 0")]) == 2
    err = capsys.readouterr().err
    assert "bad WHERE term 'COUNT(activities.*, -30, 7, DAYS) > 0'" in err and "^" in err


def test_a_relaxed_split_chooses_the_champion_on_fits_to_censored_labels(tiny_world):
    """90 days for a 25-day window: the training labels overlap validation, so the candidates
    are judged on fits to the labels as known at the first validation cutoff."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.baselines import make_model
    from leadpulse.model.evaluate import CENSORED_NOTE
    from leadpulse.model.examples import build_split, data_span
    from leadpulse.model.metrics import score_metrics
    from leadpulse.schemas.tables import read_tables
    events, _ = read_tables(tiny_world)
    query = "PREDICT COUNT(orders.*, 0, 25, DAYS) > 0 FOR EACH contacts.contact_id"
    names = ["rules", "logreg", "lgbm_agg"]
    report = run_evaluation(tiny_world, task=query, models=names, out=io.StringIO())
    assert report.split["gap"] == "relaxed"
    champion = report.row("champion")
    assert champion["chosen"] == max(names, key=lambda n: report.row(n)["valid_auroc"])
    assert CENSORED_NOTE in champion["notes"]
    assert all(report.row(n)["valid_auroc_uncensored"] is not None for n in names)
    # the figure it was chosen on: a fresh fit on the censored labels, judged on validation
    store = MemoryGraphStore()
    store.apply(sorted(events, key=lambda e: e.event_time))
    split = build_split(store, parse_task(query), *data_span(events))
    assert split.train_censored
    model = make_model("logreg").fit(split.train_censored, split.valid, seed=0)
    labels = np.concatenate([ex.labels for ex in split.valid])
    scores = np.concatenate([model.predict_proba(ex.graph(), ex.contact_ids) for ex in split.valid])
    assert report.row("logreg")["valid_auroc"] == pytest.approx(score_metrics(labels, scores).auroc, abs=1e-12)
