"""The accuracy part of the benchmark report: every ``accuracy-<size>.json`` as tables (mean and
spread over seeds, AUROC per seed, the GNN's paired gap to each baseline) and AUROC bars."""
from __future__ import annotations

from pathlib import Path

from leadpulse.bench.hazard import NAMES as REFERENCES
from leadpulse.bench.report_common import f, plt, save, table

#: what the report says under the tables when the yardstick rows are there
REFERENCE_NOTE = ("`sim_hazard` is not a model: it scores each test contact by the conversion hazard the "
                  "simulator drew its orders from at the cutoff (`sim_hazard_observed`: without the "
                  "per-person and per-account effects no data shows), bench/hazard.py. It is how much "
                  "the world's own state at the cutoff says about the next 30 days.")


def plot_auroc(accuracy: dict[str, dict], out: Path) -> str:
    sizes = sorted(accuracy)
    models = list(dict.fromkeys(m for a in accuracy.values() for m in a.get("models", a.get("summary", {}))))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(models) * max(1, len(sizes))), 4.2))
    width = 0.8 / max(1, len(sizes))
    for k, size in enumerate(sizes):
        summ = accuracy[size].get("summary", {})
        xs, means, err_lo, err_hi, names = [], [], [], [], []
        for i, m in enumerate(models):
            s = summ.get(m, {}).get("auroc")
            if s:
                names.append(m)
                xs.append(i + k * width)
                means.append(s["mean"])
                err_lo.append(s["mean"] - s["min"])
                err_hi.append(s["max"] - s["mean"])
        seeds = accuracy[size].get("seeds", [])
        bars = ax.bar(xs, means, width, yerr=[err_lo, err_hi], capsize=4, label=f"{size} ({len(seeds)} seeds)")
        for bar, m in zip(bars, names):
            if m in REFERENCES:  # the yardstick is not a model: hatched
                bar.set_hatch("//")
    ax.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(models))], models)
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("test AUROC (mean; whiskers min–max over seeds)")
    ax.set_title("Accuracy of every model (hatched: the world's own hazard, a yardstick)")
    ax.legend(fontsize=8)
    return save(fig, out / "auroc.png")


def accuracy_files(data: dict) -> dict[str, dict]:
    return {k.split("-", 1)[1]: v for k, v in data.items() if k.startswith("accuracy-")}


def accuracy_section(data: dict, out: Path) -> list[str]:
    acc = accuracy_files(data)
    if not acc:
        return ["## Accuracy", "", "not measured (`--only accuracy`)", ""]
    lines = ["## Accuracy", "", "Test window of the temporal split; mean ± sd [min–max] over seeds.", ""]
    for size, a in sorted(acc.items()):
        rows = []
        for m in a.get("models", a.get("summary", {})):
            s = a.get("summary", {}).get(m, {})
            def cell(k: str, d: int = 3, s: dict = s) -> str:
                return (f"{s[k]['mean']:.{d}f} ± {s[k]['sd']:.{d}f} [{s[k]['min']:.{d}f}–{s[k]['max']:.{d}f}]"
                        if k in s else "n/a")
            rows.append([m, cell("auroc"), cell("average_precision"), cell("lift_at_top", 2)])
        career = {True: ", career features on", False: ", career features off (`--no-career`)"}.get(a.get("career"), "")
        lines += [f"**{size}** world, seeds {a.get('seeds')}{career}", "",
                  table(["model", "AUROC", "average precision", "lift at top decile"], rows), ""]
        lines += per_seed_lines(a)
        if any(m in REFERENCES for m in a.get("summary", {})):
            lines += [REFERENCE_NOTE, ""]
        if all(r[1] == "n/a" for r in rows):
            lines += ["AUROC is undefined here: the test window of this world holds a single class.", ""]
    lines += [f"![AUROC]({plot_auroc(acc, out)})", ""]
    return lines


def per_seed_auroc(acc: dict) -> dict[str, dict[int, float]]:
    """model -> seed -> test AUROC, for the runs where the model succeeded."""
    out: dict[str, dict[int, float]] = {}
    for run in acc.get("runs", []):
        for row in run.get("rows", []):
            if row.get("status") == "ok" and row.get("auroc") is not None:
                out.setdefault(row["model"], {})[run["seed"]] = row["auroc"]
    return out


def per_seed_lines(acc: dict) -> list[str]:
    """With several seeds: AUROC per seed, and the GNN's paired gap to each baseline (same
    world, same split), which is what the issue's targets compare."""
    by_model = per_seed_auroc(acc)
    seeds = sorted({s for v in by_model.values() for s in v})
    if len(seeds) < 2:
        return []
    head = ["model"] + [f"seed {s}" for s in seeds]
    rows = [[m] + [f(v.get(s), 3) for s in seeds] for m, v in by_model.items()]
    lines = ["AUROC per seed:", "", table(head, rows), ""]
    gnn = by_model.get("gnn", {})
    gaps = []
    for m, v in by_model.items():
        common = [s for s in seeds if s in v and s in gnn]
        if m == "gnn" or not common:
            continue
        d = [100 * (gnn[s] - v[s]) for s in common]
        gaps.append([f"gnn − {m}" + (" (yardstick)" if m in REFERENCES else ""), " / ".join(f"{x:+.1f}" for x in d), f"{sum(d) / len(d):+.1f}",
                     f"{sum(x > 0 for x in d)} of {len(d)}"])
    if gaps:
        lines += ["GNN minus each baseline (and the yardstick), AUROC points, paired by seed:", "",
                  table(["gap", "per seed", "mean", "GNN ahead on"], gaps), ""]
    return lines


def mean_gaps(acc: dict) -> dict[str, float]:
    """baseline -> the GNN's AUROC minus the baseline's, in points, mean over the shared seeds."""
    by_model = per_seed_auroc(acc)
    gnn = by_model.get("gnn", {})
    out = {}
    for m, v in by_model.items():
        common = [s for s in v if s in gnn]
        if m != "gnn" and common:
            out[m] = sum(100 * (gnn[s] - v[s]) for s in common) / len(common)
    return out


def accuracy_headline(data: dict) -> list[list[str]]:
    """Headline rows: every model's test AUROC (mean ± sd over seeds) and the GNN's mean gaps."""
    rows = []
    for size, acc in sorted(accuracy_files(data).items()):
        summ = acc.get("summary", {})
        cells = [f"{m} {s['auroc']['mean']:.3f} ± {s['auroc']['sd']:.3f}"
                 for m in acc.get("models", summ) if "auroc" in (s := summ.get(m, {}))]
        if cells:
            rows.append([f"test AUROC, {size} world, {len(acc.get('seeds', []))} seed(s)", "; ".join(cells)])
        gaps = mean_gaps(acc)
        if gaps:
            ref = " (sim_*: the world's own hazard, not a model)" if any(m in REFERENCES for m in gaps) else ""
            rows.append([f"GNN minus baseline, {size} world (AUROC points, mean over seeds){ref}",
                         "; ".join(f"{m} {g:+.1f}" for m, g in gaps.items())])
    return rows
