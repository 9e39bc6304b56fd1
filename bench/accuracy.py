"""Accuracy benchmark: every lead model on simulated worlds, several seeds, mean ± spread.

For each size and seed it simulates the world (cached as CSVs under ``--data``), runs
``model.evaluate.run_evaluation`` (the fixed temporal split of ``model.examples``; the test
cutoff is only scored, never tuned on) and collects AUROC, AP, P@10 %, lift@10 %, Brier and the
fit time per model. It prints one table per size::

    model      AUROC (mean ± sd, min–max)   AP ...   lift@10% ...   fit s

and writes everything (per-seed rows too) to ``bench/results/accuracy-<size>.json``.
It prints figures; it never asserts.

Usage::

    python bench/accuracy.py --sizes small --seeds 0,1,2
    python bench/accuracy.py --sizes large --seeds 0 --max-train-cutoffs 8 --max-train-examples 10000
    python bench/accuracy.py --combine /tmp/s1/accuracy-large.json /tmp/s2/accuracy-large.json
    python bench/accuracy.py --sizes small --seeds 0,1,2 --no-career --out /tmp/lp/no-career

``--no-career`` fits every model without the contacts' career features (``model.career``: the
ablation of docs/model.md, "Job changes"); the result file records ``"career"``.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from leadpulse.bench.hazard import NAMES as REFERENCES
from leadpulse.bench.hazard import references
from leadpulse.model.evaluate import DEFAULT_MODELS, run_evaluation
from leadpulse.model.examples import SplitOptions

ROOT = Path(__file__).resolve().parent.parent

METRICS = (("AUROC", "auroc", 3), ("AP", "average_precision", 3), ("P@10%", "precision_at_top", 3),
           ("lift@10%", "lift_at_top", 2), ("Brier", "brier", 4), ("fit s", "fit_seconds", 0))


def world_dir(data: Path, size: str, seed: int) -> Path:
    """Simulate ``size``/``seed`` into ``data`` unless it is already there (same bytes anyway)."""
    out = data / f"{size}-s{seed}"
    if not (out / "world.json").exists():
        from leadpulse.simulator import simulate
        t0 = time.perf_counter()
        simulate(size, seed=seed, out_dir=str(out))
        print(f"simulated {size} seed {seed} in {time.perf_counter() - t0:.0f}s", flush=True)
    return out


def peak_rss_mb() -> int:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def merge_runs(old: dict, new_runs: list[dict], models: list[str]) -> tuple[list[dict], list[str]]:
    """New rows of ``models`` replace the same models' rows in the old runs of the same seed;
    every other old row is kept (each row records the split it was measured on)."""
    by_seed = {r["seed"]: r for r in old.get("runs", [])}
    for run in new_runs:
        prev = by_seed.get(run["seed"])
        if prev is not None:
            kept = [row for row in prev["rows"] if row["model"] not in models]
            run = {**run, "rows": kept + run["rows"],
                   "merged_from": {"wall_seconds": prev.get("wall_seconds"),
                                   "peak_rss_mb": prev.get("peak_rss_mb"),
                                   "models": [row["model"] for row in kept]}}
        by_seed[run["seed"]] = run
    order = list(old.get("models", [])) + [m for m in models if m not in old.get("models", [])]
    return [by_seed[s] for s in sorted(by_seed)], order


def commands_of(result: dict) -> list[str]:
    """Every command that contributed rows to ``result`` (files before ``commands`` had one)."""
    return list(result.get("commands") or ([result["command"]] if result.get("command") else []))


def result_file(size: str, runs: list[dict], models: list[str], split_kw: dict, commands: list[str],
                career: Optional[bool] = True) -> dict:
    """The JSON of one size: the summary over its runs, which seeds they are and how they were made
    (``career``: with the career features, or without them; None for files from before them)."""
    return {"size": size, "seeds": [r["seed"] for r in runs], "models": models, "split_options": split_kw,
            "career": career, "command": commands[-1], "commands": commands, "summary": summarise(runs),
            "runs": runs}


def make_models(names: list[str], career: bool) -> list:
    """What ``run_evaluation`` fits: the names themselves with the career features (its defaults),
    fresh instances without them (the GNN imported lazily, as ``run_evaluation`` does)."""
    if career:
        return list(names)
    from leadpulse.model.baselines import BASELINES, make_model
    out: list = []
    for name in names:
        if name in BASELINES:
            out.append(make_model(name, career=False))
        elif name == "gnn":
            try:
                from leadpulse.model.gnn import GNNLeadModel
                from leadpulse.model.gnn_options import TrainOptions
                out.append(GNNLeadModel(TrainOptions.of(career=False)))
            except ImportError:   # the row says it is unavailable
                out.append(name)
        else:
            out.append(name)
    return out


def combine(paths: list[Path], out_dir: Path) -> int:
    """Merge result files of the same size measured by separate processes (e.g. one seed per
    core): a later file's rows replace an earlier one's for the same seed and model."""
    results = [json.loads(p.read_text()) for p in paths]
    sizes = {r["size"] for r in results}
    splits = {json.dumps(r.get("split_options"), sort_keys=True) for r in results}
    careers = {r.get("career") for r in results}
    if len(sizes) != 1 or len(splits) != 1 or len(careers) != 1:
        print(f"--combine: the files differ in size {sorted(sizes)}, split options {sorted(splits)} "
              f"or career features {sorted(careers, key=str)}", file=sys.stderr)
        return 2
    merged: dict = {}
    commands: list[str] = []
    for r in results:
        runs, models = merge_runs(merged, r["runs"], r["models"])
        merged = {"runs": runs, "models": models}
        commands += [c for c in commands_of(r) if c not in commands]
    size = sizes.pop()
    doc = result_file(size, merged["runs"], merged["models"], results[0].get("split_options"), commands,
                      careers.pop())
    out = out_dir / f"accuracy-{size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(format_summary(doc["summary"], doc["models"]))
    print(f"wrote {out} (seeds {doc['seeds']})")
    return 0


def summarise(runs: list[dict]) -> dict:
    """Per model and metric: mean, sd, min, max over the runs where the model succeeded."""
    out: dict = {}
    for run in runs:
        for row in run["rows"]:
            if row.get("status") != "ok":
                continue
            m = out.setdefault(row["model"], {})
            for _label, key, _d in METRICS:
                if row.get(key) is not None:
                    m.setdefault(key, []).append(float(row[key]))
    return {model: {key: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "min": float(np.min(v)),
                          "max": float(np.max(v)), "n": len(v)} for key, v in metrics.items()}
            for model, metrics in out.items()}


def format_summary(summary: dict, models) -> str:
    head = ["model"] + [label for label, _k, _d in METRICS]
    lines = [head]
    for model in models:
        if model not in summary:
            lines.append([model] + ["n/a"] * len(METRICS))
            continue
        cells = [model]
        for _label, key, d in METRICS:
            s = summary[model].get(key)
            if s is None:
                cells.append("n/a")
            elif s["n"] == 1:
                cells.append(f"{s['mean']:.{d}f}")
            else:
                cells.append(f"{s['mean']:.{d}f} ± {s['sd']:.{d}f} [{s['min']:.{d}f}–{s['max']:.{d}f}]")
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="small", help="comma-separated: tiny, small, large")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated world (and model) seeds")
    ap.add_argument("--models", default=",".join([*DEFAULT_MODELS, *REFERENCES]),
                    help="models to fit and score; sim_hazard and sim_hazard_observed are the "
                         "world's own hazard at the cutoff (bench/hazard.py), a yardstick, not a model")
    ap.add_argument("--data", default="/tmp/leadpulse-bench", help="where simulated worlds are cached")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--max-train-cutoffs", type=int, default=None,
                    help="keep only the latest N training cutoffs (default: all)")
    ap.add_argument("--max-train-examples", type=int, default=SplitOptions().max_train_examples,
                    help="per training cutoff: all positives + sampled negatives up to N "
                         "(validation and test are never sampled)")
    ap.add_argument("--valid-cutoffs", type=int, default=SplitOptions().valid_cutoffs)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (LightGBM uses 1); 1 is fastest on a shared 2-core machine")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of an existing result file that this run does not replace "
                         "(other models of the same seed, other seeds)")
    ap.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                    help="evaluate nothing: merge these result files of one size (runs made in "
                         "separate processes, e.g. one seed per core) into --out")
    ap.add_argument("--no-career", dest="career", action="store_false",
                    help="fit every model without the contacts' career features (the ablation of "
                         "docs/model.md, 'Job changes')")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.combine:
        return combine([Path(p) for p in args.combine], Path(args.out))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:  # the gnn row will say it is unavailable
        pass
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    split_kw = {"max_train_cutoffs": args.max_train_cutoffs, "max_train_examples": args.max_train_examples,
                "valid_cutoffs": args.valid_cutoffs}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        runs = []
        t_size = time.perf_counter()
        for seed in seeds:
            tables = world_dir(Path(args.data), size, seed)
            t0 = time.perf_counter()
            buf = io.StringIO()
            options = SplitOptions(**split_kw, sample_seed=seed)
            refs = {r.name: r for r in references(tables, models)}
            fitted = make_models([m for m in models if m not in refs], args.career)
            by_name = dict(zip([m for m in models if m not in refs], fitted))
            report = run_evaluation(tables, models=[refs[m] if m in refs else by_name[m] for m in models], seed=seed, out=buf,
                                    options=options)
            wall = time.perf_counter() - t0
            print(f"--- {size} seed {seed} ({wall:.0f}s)\n{buf.getvalue()}", flush=True)
            runs.append({"seed": seed, "wall_seconds": round(wall, 1), "peak_rss_mb": peak_rss_mb(),
                         **report.to_dict()})
        out = Path(args.out) / f"accuracy-{size}.json"
        all_models, commands = models, []
        if args.merge and out.exists():
            old = json.loads(out.read_text())
            if old.get("career") != args.career:
                print(f"--merge: {out} was measured with career features {old.get('career')}, this run "
                      f"{args.career}; not merged", file=sys.stderr)
                return 2
            runs, all_models = merge_runs(old, runs, models)
            commands = commands_of(old)
        commands.append(" ".join(["python", "bench/accuracy.py", *(argv or sys.argv[1:])]))
        doc = result_file(size, runs, all_models, split_kw, commands, args.career)
        print(f"=== {size}, seeds {doc['seeds']}, career features {'on' if args.career else 'off'}: "
              "mean ± sd [min–max] over seeds "
              f"({time.perf_counter() - t_size:.0f}s, peak RSS {peak_rss_mb()} MB)")
        print(format_summary(doc["summary"], all_models), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
