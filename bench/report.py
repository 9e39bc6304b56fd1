"""The benchmark report: every ``*.json`` of a results directory into ``REPORT.md`` and PNG plots.

Every figure in the report is read from the JSON the benchmarks wrote (nothing is typed in
by hand); a benchmark without JSON is listed as not measured. Plots: latency CDF,
throughput vs offered rate, AUROC bars with their spread over seeds, incremental speedup vs
graph size, memory vs events.

    python bench/report.py [--results bench/results]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional

from leadpulse.bench.common import DEFAULT_OUT, ROOT
from leadpulse.bench.report_accuracy import accuracy_headline, accuracy_section
from leadpulse.bench.report_common import f, plt, save, table


def load(results: Path) -> dict:
    """name (file stem) -> parsed JSON, for every readable JSON file in ``results``."""
    out = {}
    for path in sorted(results.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"report: skipping {path} ({exc})", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- plots
def plot_latency_cdf(stream: dict, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for app, style in (("worker", "-"), ("passthrough", "--")):
        for ph in stream["apps"].get(app, {}).get("phases", []):
            cdf = ph.get("cdf_ms") or []
            if cdf:
                ys = [i / (len(cdf) - 1) for i in range(len(cdf))] if len(cdf) > 1 else [1.0]
                ax.plot([max(x, 0.5) for x in cdf], ys, style, label=f"{app} @ {ph['name']}")
    ax.set_xscale("log")
    ax.set_xlabel("event → publish latency (ms, log)")
    ax.set_ylabel("share of events")
    ax.set_title("Latency CDF per offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out / "latency_cdf.png")


def plot_throughput(stream: dict, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    top = 1.0
    for app, marker in (("worker", "o"), ("passthrough", "s")):
        pts = [(p["offered_rate"], p["achieved_rate"] if p["drained"] else p.get("drain_rate"))
               for p in stream["apps"].get(app, {}).get("phases", [])]
        pts = [pt for pt in pts if pt[0] and pt[1]]
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=app)
            top = max(top, max(max(p) for p in pts))
    ax.plot([1, top], [1, top], ":", color="grey", label="achieved = offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (events/s, log)")
    ax.set_ylabel("achieved rate (events/s, log; while behind if not drained)")
    ax.set_title("Throughput vs offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out / "throughput_vs_rate.png")


def plot_speedup(incremental: dict, out: Path) -> str:
    worlds = sorted(incremental.get("worlds", []), key=lambda w: w["contacts"])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [w["contacts"] for w in worlds]
    ax.plot(xs, [w["speedup_median_of_ratios"] for w in worlds], "o-", label="full / incremental (median per event)")
    for w in worlds:
        ax.annotate(w["world"], (w["contacts"], w["speedup_median_of_ratios"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("contacts in the graph (log)")
    ax.set_ylabel("speedup (log)")
    ax.set_title("Incremental vs full recompute per event")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out / "speedup_vs_size.png")


def plot_memory(memory: dict, out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "rss_bytes", "RSS (MB)"), (axes[1], "store_bytes", "bytes on disk (MB)")):
        for name in ("worker", "store"):
            s = memory.get(name, {}).get("samples", [])
            if s:
                ax.plot([x["events"] for x in s], [x[key] / 1e6 for x in s], "o-", ms=3,
                        label=name + (" (growth over baseline)" if name == "store" and key == "rss_bytes" else ""))
        ax.set_xlabel("events applied")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Memory and store size vs events")
    return save(fig, out / "memory.png")


# --------------------------------------------------------------------------- sections
def _cpu(machine: dict) -> str:
    model = re.search(r"Model name:\s*(.+)", machine.get("lscpu") or "")
    return model.group(1).strip() if model else "n/a"


def machine_section(data: dict) -> list[str]:
    m = next((d["machine"] for d in data.values() if isinstance(d, dict) and d.get("machine")), None)
    if m is None:
        return ["## Machine", "", "not recorded", ""]
    lscpu = m.get("lscpu") or ""
    mem = (m.get("meminfo") or {}).get("MemTotal")
    lines = ["## Machine", "", table(["what", "value"], [
        ["CPU", _cpu(m)], ["CPUs", m.get("cpus")], ["memory", mem or "n/a"],
        ["platform", m.get("platform")], ["python", m.get("python")], ["torch", m.get("torch")],
        ["torch_geometric", m.get("torch_geometric")], ["faust", m.get("faust")],
        ["aiokafka", m.get("aiokafka")], ["rocksdict", m.get("rocksdict")]]), ""]
    loads = [(k, d["machine"].get("loadavg", [None])[0]) for k, d in data.items()
             if isinstance(d, dict) and d.get("machine")]
    lines += ["Load average (1 min) when each benchmark finished: "
              + ", ".join(f"{k} {f(v, 2)}" for k, v in loads)
              + f". Above {m.get('cpus')} the machine was shared while measuring: timings are noisy.", ""]
    by_cpu: dict[str, list[str]] = {}
    for k, d in data.items():
        if isinstance(d, dict) and d.get("machine") and _cpu(d["machine"]) != "n/a":
            by_cpu.setdefault(_cpu(d["machine"]), []).append(k)
    if len(by_cpu) > 1:  # results kept from runs on another machine: compare within a benchmark only
        lines += ["The results come from more than one machine (the table above is the first one's): "
                  + "; ".join(f"{c}: {', '.join(ks)}" for c, ks in by_cpu.items())
                  + ". Compare figures within one benchmark, or with the pass-through of the same run.", ""]
    if lscpu:
        lines += ["<details><summary>lscpu</summary>", "", "```", lscpu.strip(), "```", "", "</details>", ""]
    return lines


def max_rate(stream: dict, app: str) -> tuple[Optional[float], str]:
    """The app's sustained rate: end to end when its max phase was processed, else its rate
    while behind (events through its last stage per second), and which one it is."""
    ph = next((p for p in stream["apps"].get(app, {}).get("phases", []) if p["name"] == "max"), {})
    if ph.get("drained"):
        return ph.get("achieved_rate"), "end to end"
    return ph.get("drain_rate"), "while behind"


def headline_section(data: dict) -> list[str]:
    rows = []
    gs = data.get("graph_store", {})
    if gs:
        ap, ex = gs.get("apply_rocksdb", {}), gs.get("extract_2hop", {})
        rows.append([f"graph store apply, {f(ap.get('events'))} events, RocksDB (events/s, median batch / overall)",
                     f"{f(ap.get('events_per_s_median_batch'))} / {f(ap.get('events_per_s_overall'))}"])
        seeds = [k for k, v in ex.items() if isinstance(v, dict)]
        rows.append([f"exact 2-hop extraction, {' / '.join(seeds)} seeds (p50 ms)",
                     " / ".join(f(ex[k].get("p50_ms"), 2) for k in seeds)])
    for key in ACCOUNTS_RESULTS:
        acc = data.get(key, {})
        for r in acc.get("rows", []):
            rows.append([f"account stage in-process, {acc.get('world')} world, {f(r['events'])} events in batches of "
                         f"{r['batch']} records{_history(acc)} (events/s)", f(r["events_per_s"])])
            if r.get("phases"):
                rows.append([f"… per phase of {f(r['phases'][0]['events'])} events (events/s; last / first)",
                             " / ".join(f(ph["events_per_s"]) for ph in r["phases"]) + f"; {f(r['last_over_first'], 2)}"])
    for key in STREAM_RESULTS:
        rows += _stream_headline(data.get(key))
    for w in data.get("incremental", {}).get("worlds", []):
        rows.append([f"incremental vs full per event, {w['world']} world ({w['contacts']:,} contacts)",
                     f"x{f(w['speedup_median_of_ratios'])}; max abs score difference {w['max_abs_diff']:.1e}"])
    rows += accuracy_headline(data)
    rec = data.get("recovery", {}).get("summary", {})
    if rec:
        rows += [["SIGKILL → first new score (s, median)", f(rec.get("kill_to_first_score_s_median"))],
                 ["catch-up rate after restart (events/s, median)", f(rec.get("catch_up_events_per_s_median"))]]
    for name in ("worker", "store"):
        s = data.get("memory", {}).get(name)
        if s and s["rss"]["per_100k"] is not None:
            ext = " (extrapolated)" if s["rss"]["at_1m_extrapolated"] else ""
            rows.append([f"{name}: RSS growth per 100k events / RSS at 1M{ext} (MB)",
                         f"{f(s['rss']['per_100k'] / 1e6)} / {f(s['rss']['at_1m'] / 1e6, 0)}"])
            rows.append([f"{name}: store growth per 100k events / at 1M{ext} (MB)",
                         f"{f(s['store']['per_100k'] / 1e6)} / {f(s['store']['at_1m'] / 1e6, 0)}"])
    return ["## Headline figures", "", table(["what", "measured"], rows) if rows else "nothing measured yet", ""]


#: stream benchmark results the report shows: the suite's run, and the large world run alone
STREAM_RESULTS = ("stream", "stream-large")


def _stream_headline(stream: Optional[dict]) -> list[list]:
    h = (stream or {}).get("headline", {})
    if not h:
        return []
    (w, wk), (p, pk) = max_rate(stream, "worker"), max_rate(stream, "passthrough")
    world = f"`{stream['world']}` world"
    return [[f"worker, {world}, as fast as possible (events/s, {wk})", f(w)],
            [f"Faust pass-through, same run (events/s, {pk})", f(p)],
            ["worker / pass-through", f(w / p, 3) if w and p else "n/a"],
            [f"worker p50 / p99 event→publish at 1,000 events/s, {world} (ms)",
             f"{f(h.get('worker_p50_ms_at_1000'), 0)} / {f(h.get('worker_p99_ms_at_1000'), 0)}"],
            ["pass-through p50 / p99 at 1,000 events/s (ms)",
             f"{f(h.get('passthrough_p50_ms_at_1000'), 0)} / {f(h.get('passthrough_p99_ms_at_1000'), 0)}"]]


def _worker_line(settings: dict) -> str:
    w = settings.get("worker")  # not recorded by runs before coalescing
    if not w:
        return ""
    n = settings.get("processes", 1)
    procs = f" {n} processes per app in one consumer group." if n > 1 else ""
    longest = w.get("coalesce_max_ms")  # not recorded by runs before the window grew with the lag
    grows = (f", growing with the lag up to {f(longest)} ms (`LEADPULSE_COALESCE_MAX_MS`)"
             if longest and longest > w["coalesce_ms"] else "")
    return (f" Worker: batches of up to {w['batch_size']:,} records or {w['batch_ms']} ms, coalescing window "
            f"{f(w['coalesce_ms'])} ms (`LEADPULSE_COALESCE_MS`){grows}.{procs}")


def _processed(p: dict) -> str:
    if p["drained"]:
        return "yes"
    if p.get("caught_up") is None:
        return "**no**"
    return (f"**no**; caught up {f(p['catch_up_seconds'], 0)} s later" if p["caught_up"]
            else f"**no**, nor {f(p['catch_up_seconds'], 0)} s later")


def stream_section(stream: Optional[dict], out: Path, key: str = "stream") -> list[str]:
    """The stream benchmark's tables; the plots only for the suite's run (``key`` "stream")."""
    title = "## Throughput and latency" + ("" if key == "stream" else f" (`{key}.json`)")
    if not stream:
        return [title, "", "not measured (`leadpulse bench --only stream`)", ""] if key == "stream" else []
    s = stream["settings"]
    lines = [title, "",
             f"World `{stream['world']}` (seed {stream['seed']}): {stream['events']['preload']:,} pre-history "
             f"events preloaded, then phases of {f(s['duration_s'])} s per fixed rate and {s['max_events']:,} "
             f"events as fast as possible; {s['partitions']} partitions. Latency: {s['latency']}. "
             "achieved/s: end to end, for a phase processed within the drain timeout (else *behind*; the "
             "next phase started once the worker had caught up with it, untimed, where *processed* says so, "
             "and on its backlog otherwise, its latencies including it); draining/s: events "
             "through the last stage per second after the phase's last send." + _worker_line(s), ""]
    for app in ("worker", "passthrough"):
        if stream["apps"].get(app, {}).get("error"):
            lines += [f"**{app}** failed: `{stream['apps'][app]['error'].splitlines()[-1][:300]}`", ""]
            continue
        phases = stream["apps"].get(app, {}).get("phases", [])
        rows = [[p["name"], f(p["events"]), f(p["offered_rate"]),
                 f(p["achieved_rate"]) if p["drained"] else "behind", f(p.get("drain_rate")),
                 f(p["latency_ms"]["p50"], 0), f(p["latency_ms"]["p95"], 0), f(p["latency_ms"]["p99"], 0),
                 f"{p['latency_samples']:,}", _processed(p)] for p in phases]
        lines += [f"**{app}**", "", table(["phase", "events", "offered/s", "achieved/s", "draining/s", "p50 ms", "p95 ms",
                                           "p99 ms", "latency samples", "processed"], rows), ""]
    if key == "stream":
        lines += [f"![latency CDF]({plot_latency_cdf(stream, out)})", "",
                  f"![throughput vs rate]({plot_throughput(stream, out)})", ""]
    return lines


def incremental_section(inc: Optional[dict], out: Path) -> list[str]:
    if not inc:
        return ["## Incremental vs full recompute", "", "not measured (`--only incremental`)", ""]
    rows = [[w["world"], f"{w['contacts']:,}", w["events_measured"], f(w["affected_median"]),
             f(w["incremental_ms_median"]), f(w["full_ms_median"]), f"x{f(w['speedup_median_of_ratios'])}",
             f"x{f(w['speedup_ratio_of_medians'])}", f"{w['max_abs_diff']:.1e}"] for w in inc["worlds"]]
    return ["## Incremental vs full recompute", "",
            f"Per event, {inc['threads']} torch thread(s); incremental = affected leads' exact 2-hop "
            "subgraph and score, full = snapshot and score of every lead, both as of the watermark.", "",
            table(["world", "contacts", "events", "affected (median)", "incremental ms", "full ms",
                   "speedup (median of ratios)", "speedup (ratio of medians)", "max abs diff"], rows), "",
            f"![speedup vs size]({plot_speedup(inc, out)})", ""]


def recovery_section(rec: Optional[dict]) -> list[str]:
    if not rec:
        return ["## Recovery", "", "not measured (`--only recovery`)", ""]
    never = f"not within {f(rec['timeout_s'])} s" if rec.get("timeout_s") else "no"
    rows = [[i + 1, f(k["kill_to_http_s"]), f(k["kill_to_first_consumed_s"]), f(k["kill_to_first_score_s"]),
             f(k["kill_to_caught_up_s"]) if k["caught_up"] else never, f(k["catch_up_events_per_s"])]
            for i, k in enumerate(rec["kills"])]
    return ["## Recovery", "", f"World `{rec['world']}` replayed at {f(rec['rate'])} events/s; the worker is "
            "SIGKILLed and restarted at once on its data directory.", "",
            table(["kill", "→ HTTP up (s)", "→ first consumed (s)", "→ first new score (s)", "→ caught up (s)",
                   "catch-up events/s"], rows), ""]


def memory_section(mem: Optional[dict], out: Path) -> list[str]:
    if not mem:
        return ["## Memory", "", "not measured (`--only memory`)", ""]
    rows = []
    for name in ("worker", "store"):
        s = mem.get(name)
        if s:
            last = next((x for x in s["samples"] if x["events"] == s["events_reached"]), s["samples"][-1])
            rows.append([name, s["world"], f"{s['events_reached']:,}", f(last["rss_bytes"] / 1e6, 0),
                         f(last["store_bytes"] / 1e6), f((s["rss"]["per_100k"] or 0) / 1e6),
                         f((s["store"]["per_100k"] or 0) / 1e6),
                         "extrapolated" if s["rss"]["at_1m_extrapolated"] else "measured"])
    # a series measured by its own run (``--series worker``) names its command
    own = [f"The {name} series: `{mem[name]['command']}`." for name in ("worker", "store")
           if mem.get(name, {}).get("command")]
    return ["## Memory", "", "worker = a `leadpulse worker` process (RSS of the process); store = the RocksDB "
            "graph store alone in the benchmark process (RSS growth over the loaded events).", "",
            table(["series", "world", "events", "RSS MB", "store MB", "RSS MB / 100k", "store MB / 100k",
                   "1M figure"], rows), "", *([" ".join(own), ""] if own else []),
            f"![memory]({plot_memory(mem, out)})", ""]


def graph_store_section(gs: Optional[dict]) -> list[str]:
    if not gs:
        return []
    ap = gs.get("apply_rocksdb", {})
    ex = gs.get("extract_2hop", {})
    rows = [[f"apply, {f(ap.get('events'))} events in batches of {gs.get('batch')} (events/s)",
             f"median batch {f(ap.get('events_per_s_median_batch'))} (per CPU second "
             f"{f(ap.get('events_per_cpu_s_median_batch'))}); "
             f"overall {f(ap.get('events_per_s_overall'))} ({f(ap.get('seconds'))} s)"]]
    rows += [[f"exact 2-hop extraction, {k} seed(s) (median {f(v.get('nodes_median'))} nodes)",
              f"p50 {f(v.get('p50_ms'), 2)} ms, p99 {f(v.get('p99_ms'), 2)} ms"]
             for k, v in ex.items() if isinstance(v, dict)]  # (beside them: what is timed, first read)
    if ex.get("first_read_ms") is not None:
        rows += [["first extraction after the bulk apply (ms, copies the new columns once)", f(ex["first_read_ms"])]]
    runs = gs.get("per_run") or {}
    if gs.get("repeats", 1) > 1 and runs:
        rows += [[f"each of the {gs['repeats']} runs (fresh stores, one process; the rows above are medians)",
                  f"apply {', '.join(f(x) for x in runs.get('apply_events_per_s_median_batch', []))} events/s; "
                  f"100 seeds p50 {', '.join(f(x, 2) for x in runs.get('extract_100_p50_ms', []))} ms; "
                  f"1,000 seeds p50 {', '.join(f(x, 1) for x in runs.get('extract_1000_p50_ms', []))} ms"]]
    again = gs.get("extract_2hop_after_reopen", {}).get("100")
    if again:
        rows += [["100 seeds on the reopened store (ms)", f"p50 {f(again.get('p50_ms'), 2)}"]]
    rows += [["full snapshot (s)", f(gs.get("snapshot_s"))], ["on disk (MB)", f((gs.get("disk_bytes") or 0) / 1e6)],
             ["reopen: rebuild the in-memory index (s)", f(gs.get("reopen_s"))],
             ["peak RSS of the benchmark process (MB)", f(gs.get("max_rss_mb"))]]
    w = gs.get("world", {})
    lines = ["## Graph store", "",
             f"`bench/graph_store.py`, {w.get('source')} world at scale {w.get('scale')} "
             f"({', '.join(f'{v:,} {k}' for k, v in sorted(w.get('counts', {}).items()))}); load average "
             f"{f((gs.get('machine', {}).get('loadavg_at_start') or [None])[0], 2)} at the start.", "",
             table(["what", "measured"], rows), ""]
    aff = gs.get("affected") or {}
    if aff:
        lines += [f"Affected leads per applied event ({next(iter(aff.values())).get('n')} fresh events of each kind "
                  "at the end of the stream; the last column is the time of `affected_leads`):", "",
                  table(["event", "p50", "p90", "p99", "max", "affected_leads p50 ms"],
                        [[k, v.get("p50"), v.get("p90"), v.get("p99"), v.get("max"),
                          f(v.get("affected_leads_p50_ms"), 2)] for k, v in sorted(aff.items())]), ""]
    return lines


#: account-stage results the report shows: the suite's run (10k world), the large world's phases
#: from its start, deep in its history (``--start-at``) and phase by phase from about three months in
ACCOUNTS_RESULTS = ("accounts", "accounts-large", "accounts-deep", "accounts-flat")


def _history(acc: dict) -> str:
    n = acc.get("start_at")
    return f", after {n:,} events of history applied unscored (`--start-at`)" if n else ""


def accounts_section(acc: Optional[dict], key: str = "accounts") -> list[str]:
    if not acc:
        return []
    rows = [[r["batch"], f(r["events"]), f(r["events_per_s"]), f(r["leads_scored_per_s"]), f(r["published_per_s"]),
             f(100 * r["apply_share"], 0), f(100 * r["score_share"], 0)] for r in acc.get("rows", [])]
    lines = [f"## Account stage in-process (no Kafka): `{key}`", "",
             f"`bench/accounts.py`: world `{acc.get('world')}`, {acc.get('partitions')} partitions, "
             f"{acc.get('threads')} torch thread(s){_history(acc)}; the worker's scoring logic on RocksDB without the "
             "broker, Faust or the ingest stage — the ceiling the stream figures compare with.", "",
             table(["records per batch", "events", "events/s", "leads scored/s", "published/s", "apply %",
                    "subgraph + score %"], rows), ""]
    for r in acc.get("rows", []):
        if r.get("phases"):  # does an event cost more as the history behind it grows?
            lines += [f"Batches of {r['batch']} records, phase by phase (the history grows from one to the next; "
                      f"last phase's rate over the first's: {f(r['last_over_first'], 2)}):", "",
                      table(["events up to", "events/s", "events per CPU second", "leads scored per event"],
                            [[f(ph["ends_at"]), f(ph["events_per_s"]), f(ph["events_per_cpu_s"]),
                              f(ph["leads_per_event"], 2)] for ph in r["phases"]]), ""]
    return lines


def write_report(results: Path) -> Path:
    """Write ``results/REPORT.md`` (and its PNGs) from the JSON files in ``results``."""
    results = Path(results)
    data = load(results)
    run = data.pop("run", {})
    lines = ["# leadpulse benchmark report", "",
             "Every figure below is read from the JSON files in this directory, written by the "
             "benchmarks; the machine is described at the end.", ""]
    if run:
        lines += ["Command" + ("s" if len(run.get("commands", [])) > 1 else "") + ": "
                  + ", then ".join(f"`{c}`" for c in run.get("commands") or [run.get("command", "leadpulse bench")])
                  + (f" ({f(run.get('wall_seconds') / 60, 0)} min, finished {run.get('finished_at')})"
                     if run.get("wall_seconds") else ""), ""]
    if run.get("runs"):
        lines += [table(["benchmark", "exit", "minutes", "command"],
                        [[r["name"], r["exit_code"], f(r["wall_seconds"] / 60), "`" + " ".join(
                            Path(a).name if i == 0 else a.replace(str(ROOT) + "/", "")
                            for i, a in enumerate(r["argv"])) + "`"]
                         for r in run["runs"]]), ""]
    ran = {r["name"] for r in run.get("runs", [])}
    alone = [(k, d.get("commands") or [d["command"]]) for k, d in sorted(data.items())
             if isinstance(d, dict) and d.get("command") and k not in ran]
    if alone:
        lines += [("Run alone (not by the command above): " if run else "Each benchmark was run alone: ")
                  + "; ".join(f"{k}: " + " and ".join(f"`{c}`" for c in cs) for k, cs in alone) + ".", ""]
    lines += headline_section(data)
    for key in STREAM_RESULTS:
        lines += stream_section(data.get(key), results, key)
    for key in ACCOUNTS_RESULTS:
        lines += accounts_section(data.get(key), key)
    lines += incremental_section(data.get("incremental"), results)
    lines += accuracy_section(data, results)
    lines += recovery_section(data.get("recovery"))
    lines += memory_section(data.get("memory"), results)
    lines += graph_store_section(data.get("graph_store"))
    lines += machine_section(data)
    path = results / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=DEFAULT_OUT)
    write_report(ap.parse_args(argv).results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
