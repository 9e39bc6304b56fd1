"""``leadpulse models list | show | promote | rollback | pin | unpin``: the model registry by hand.

Every subcommand works on the registry of ``train`` and ``retrain`` (``LEADPULSE_MODEL_DIR``,
default ``$LEADPULSE_DATA_DIR/models``). A change of the champion is written to the registry
(``champion.json``, the ``champions.jsonl`` history, a decision) and, when ``KAFKA_BOOTSTRAP``
is set, announced on ``models.updates`` as ``train`` announces its decisions. Workers that follow
the champion swap at their next champion poll (``LEADPULSE_MODEL_POLL_SECONDS``), announced or
not. Semantics of the history, rollback and the pin: ``leadpulse.model.registry`` and
docs/operating.md#models.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Optional

from leadpulse.stream.config import Settings

logger = logging.getLogger(__name__)

#: the list's figure columns: heading, metric keys (``model.metrics.ScoreMetrics.to_dict``; "ap" for
#: artifacts registered by hand)
_FIGURES = (("AUROC", ("auroc",)), ("AP", ("average_precision", "ap")))


def _registry(settings: Settings):
    """The registry, or None after saying there is none (a mistyped path is never created)."""
    from leadpulse.model.registry import ModelRegistry
    root = settings.models_path
    if not (root / "versions").is_dir():
        print(f"leadpulse models: no model registry at {root} (set LEADPULSE_MODEL_DIR, or train one "
              "with `leadpulse train`)", file=sys.stderr)
        return None
    return ModelRegistry(root)


def _date(micros: int) -> str:
    dt = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d") if dt.time() == datetime.min.time() else dt.strftime("%Y-%m-%d %H:%M")


def _span(window: Optional[list]) -> str:
    return f"{_date(window[0])} .. {_date(window[1])}" if window else "-"


def _figure(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _summary(registry, version: str, champion: Optional[str], pin: Optional[dict]) -> dict:
    """One version as ``list --json`` shows it (``error`` instead of the artifact when unreadable)."""
    from leadpulse.model.registry import RegistryError, latest_window
    row = {"version": version, "champion": version == champion, "pinned": version == champion and pin is not None}
    try:
        art = registry.artifact(version)
    except RegistryError as exc:
        return {**row, "error": str(exc)}
    latest = latest_window(art)
    return {**row, "name": art.get("name"), "class": art.get("class"), "task": art.get("task"),
            "created_at": art.get("created_at"), "parent": art.get("parent"),
            "window": latest["window"] if latest else None, "metrics": latest["metrics"] if latest else {}}


# --------------------------------------------------------------------------- list / show
def _run_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    if registry is None:
        return 2
    champion, pin = registry.champion(), registry.pinned()
    rows = sorted((_summary(registry, v, champion, pin) for v in registry.versions()),
                  key=lambda r: (r.get("created_at") or "", r["version"]))
    if args.json:
        print(json.dumps({"registry": str(registry.root), "champion": champion, "pinned": pin,
                          "versions": rows}, indent=2))
        return 0
    if not rows:
        print(f"no versions in {registry.root}")
        return 0
    table = [("VERSION", "MODEL", "CREATED (UTC)", "PARENT", "LATEST HELD-OUT WINDOW", *(h for h, _ in _FIGURES), "")]
    for r in rows:
        if "error" in r:
            table.append((r["version"], "?", "-", "-", "-", "-", "-", "unreadable: " + r["error"]))
            continue
        model = f"{r['name']} ({(r['class'] or '').rpartition(':')[2]})"
        created = (r["created_at"] or "-")[:16].replace("T", " ")
        flags = ("champion, pinned" if r["pinned"] else "champion") if r["champion"] else ""
        table.append((r["version"], model, created, r["parent"] or "-", _span(r["window"]),
                      *(_figure(next((r["metrics"][k] for k in keys if k in r["metrics"]), None))
                        for _, keys in _FIGURES), flags))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if champion is None:
        print("no champion yet: `leadpulse models promote VERSION --reason ...`")
    return 0


def _run_show(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.model.registry import CHAMPION, RegistryError
    registry = _registry(settings)
    if registry is None:
        return 2
    champion, pin = registry.champion(), registry.pinned()
    version = champion if args.version == CHAMPION else args.version
    if version is None:
        print("leadpulse models show: no champion yet", file=sys.stderr)
        return 2
    try:
        art = registry.artifact(version)
    except RegistryError as exc:
        print(f"leadpulse models show: {exc}", file=sys.stderr)
        return 2
    decisions = [d for d in registry.decisions() if version in (d["challenger"], d["champion"])]
    history = [h for h in registry.champion_history() if version in (h["version"], h.get("previous"))]
    status = {"champion": version == champion, "pinned": pin if version == champion else None}
    tiers, unreadable = _tier_card(registry, version)
    if args.json:
        print(json.dumps({"artifact": art, **status, "tiers": tiers, "history": history, "decisions": decisions},
                         indent=2))
        return 0
    print(version + ("  CHAMPION" if status["champion"] else "")
          + (f"  PINNED since {pin['since']} ({pin['reason']})" if status["pinned"] else ""))
    print(f"  model        {art.get('name')} ({art.get('class')})")
    print(f"  task         {art.get('task')}")
    print(f"  trained on   cutoffs {_span(art.get('train_window'))} (UTC)")
    print(f"  created      {art.get('created_at')}")
    print(f"  parent       {art.get('parent') or '-'}")
    print("  held-out windows (UTC):")
    for m in sorted(art.get("metrics") or [], key=lambda m: tuple(m["window"])):
        print(f"    {_span(m['window'])}  " + " ".join(f"{k}={_figure(v)}" for k, v in sorted(m["metrics"].items())))
    if not art.get("metrics"):
        print("    none")
    _print_tiers(tiers, unreadable)
    print("  champion history:")
    for h in history:
        print(f"    {h['at']}  {h['action']:<8} {h['version']} (was {h.get('previous') or '-'}): {h['reason']}")
    if not history:
        print("    never champion")
    print("  decisions:")
    for d in decisions:
        role = "challenger" if d["challenger"] == version else f"champion against {d['challenger']}"
        print(f"    {d['decided_at']}  {d['kind']:<8} {'PROMOTED' if d['promoted'] else 'not promoted'} "
              f"({role}): {d['reason']}")
    if not decisions:
        print("    none")
    return 0


def _tier_card(registry, version: str) -> tuple[Optional[dict], Optional[str]]:
    """The version's tier card, as a worker serving it reports it in /healthz (``card_of``: any
    family), and why it could not be read (None when it could)."""
    from leadpulse.model.calibration import card_of
    try:
        return card_of(registry.load(version)), None
    except Exception as exc:  # a model this leadpulse cannot load still has an artifact to show
        return None, f"{type(exc).__name__}: {exc}"


def _print_tiers(card: Optional[dict], unreadable: Optional[str]) -> None:
    def pct(v) -> str:
        return f"{100 * v:.1f} %" if isinstance(v, (int, float)) else "-"
    if card is None:
        print("  tiers        " + (f"unreadable ({unreadable})" if unreadable else "none"))
        return
    leads = f"{card['leads']} leads, " if card.get("leads") is not None else ""
    print(f"  tiers ({card['basis']}: {leads}base rate {pct(card.get('base_rate'))}):")
    for t in card["tiers"]:
        lift = f"{t['lift']:.1f}" if isinstance(t.get("lift"), (int, float)) else "-"
        print(f"    {t['tier']}  score >= {t['min_score']:.4f}  share {pct(t.get('share')):>7}  converted "
              f"{pct(t.get('conversion_rate')):>7}  lift {lift:>4}  {t['action']}")


# --------------------------------------------------------------------------- changes
def _announce(settings: Settings, registry, decision) -> int:
    """Tell the workers (and any subscriber) about a new champion; the exit code."""
    from leadpulse.model.registry import latest_window
    from leadpulse.stream.modelcmds import announce_or_explain, announce_update
    poll = f"workers that follow the champion swap to it within {settings.model_poll_seconds:g} s (their champion poll)"
    if not settings.kafka_bootstrap:
        print(f"no broker configured (KAFKA_BOOTSTRAP): the change is in the registry only; {poll}")
        return 0
    art = registry.artifact(decision.challenger)
    latest = latest_window(art)
    trained = datetime.fromisoformat(art["created_at"]) if art.get("created_at") else None
    code = announce_or_explain(settings, lambda: announce_update(
        settings, decision.challenger, True, decision.reason, latest["metrics"] if latest else {}, trained))
    if code == 0:
        print(f"announced on {settings.topic('models.updates')}; {poll}")
    return code


def _refused(command: str, exc: Exception) -> int:
    from leadpulse.model.registry import PinnedError
    hint = (" (`leadpulse models unpin` first, or pass --force: the pin then holds the new champion)"
            if isinstance(exc, PinnedError) else "")
    print(f"leadpulse models {command}: {exc}{hint}", file=sys.stderr)
    return 2


def _run_promote(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.model.registry import RegistryError
    registry = _registry(settings)
    if registry is None:
        return 2
    if registry.champion() == args.version:
        print(f"{args.version} is already the champion; nothing changed")
        return 0
    try:
        decision = registry.promote(args.version, args.reason, force=args.force)
    except RegistryError as exc:
        return _refused("promote", exc)
    print(f"{decision.challenger} is the champion (was {decision.champion or 'none'}): {decision.reason}")
    return _announce(settings, registry, decision)


def _run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.model.registry import RegistryError
    registry = _registry(settings)
    if registry is None:
        return 2
    try:
        decision = registry.rollback(args.reason or "", force=args.force)
    except RegistryError as exc:
        return _refused("rollback", exc)
    print(f"rolled back from {decision.champion} to {decision.challenger}")
    return _announce(settings, registry, decision)


def _run_pin(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.model.registry import RegistryError
    registry = _registry(settings)
    if registry is None:
        return 2
    before = registry.pinned()
    try:
        decision = registry.pin(args.version, args.reason or "", force=args.force)
    except RegistryError as exc:
        return _refused("pin", exc)
    pin = registry.pinned()
    if decision is not None:
        print(f"{decision.challenger} is the champion (was {decision.champion or 'none'}): {decision.reason}")
    if before is not None:
        print(f"{registry.champion()} is pinned (since {pin['since']}: {pin['reason']})")
    else:
        print(f"pinned {registry.champion()}: `train`, `retrain` and periodic retrains record their "
              "decisions but do not replace it until `leadpulse models unpin`")
    return _announce(settings, registry, decision) if decision is not None else 0


def _run_unpin(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    if registry is None:
        return 2
    pin = registry.unpin(args.reason or "")
    if pin is None:
        print("the registry was not pinned; nothing changed")
    else:
        print(f"unpinned {registry.champion()} (pinned since {pin['since']}: {pin['reason']}); the next "
              "challenger that beats it is promoted")
    return 0


# --------------------------------------------------------------------------- parsers
def register(subparsers: argparse._SubParsersAction) -> None:
    where = ("The registry is $LEADPULSE_MODEL_DIR (default $LEADPULSE_DATA_DIR/models), as for train "
             "and retrain.")
    announced = (" The change is announced on models.updates when KAFKA_BOOTSTRAP is set; workers that "
                 "follow the champion swap to it at their next champion poll either way "
                 "(LEADPULSE_MODEL_POLL_SECONDS).")
    models = subparsers.add_parser(
        "models", help="list and inspect registered models; promote, roll back, pin the champion",
        description="The model registry by hand. " + where)
    sub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("list", help="every registered version, one line each",
                       description="Every registered version, oldest first: family and class, creation "
                                   "time, parent, AUROC and AP on its latest held-out window, and which "
                                   "is the champion (and whether it is pinned). " + where)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=_run_list)

    p = sub.add_parser("show", help="one version: artifact, held-out windows, history, decisions",
                       description="A version's artifact (task, training window, the metrics of every "
                                   "held-out window, dates in UTC), the champion changes and promotion "
                                   "decisions that concern it, and whether it is the champion and "
                                   "pinned. " + where)
    p.add_argument("version", metavar="VERSION|champion", help="a version name, or `champion`")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=_run_show)

    p = sub.add_parser("promote", help="make a version the champion by hand",
                       description="Make VERSION the champion whatever its metrics, recorded as a manual "
                                   "decision with your reason and in the champion history. Refused for "
                                   "an unknown version, and on a pinned registry unless --force." + announced)
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--reason", required=True, help="why (kept in the decision and the history)")
    p.add_argument("--force", action="store_true", help="promote even though the registry is pinned "
                                                        "(the pin then holds VERSION)")
    p.set_defaults(func=_run_promote)

    p = sub.add_parser("rollback", help="restore the previous champion",
                       description="Restore the champion before the current one. The history is a "
                                   "stack: each promotion pushes, each rollback pops, so a second "
                                   "rollback goes back one more champion; refused past the first "
                                   "champion, and on a pinned registry unless --force." + announced)
    p.add_argument("--reason", default=None, help='recorded as "rollback: REASON" (default "rollback")')
    p.add_argument("--force", action="store_true", help="roll back even though the registry is pinned "
                                                        "(the pin then holds the restored champion)")
    p.set_defaults(func=_run_rollback)

    p = sub.add_parser("pin", help="stop automatic promotion (optionally promoting VERSION first)",
                       description="Pin the champion: train, retrain and the worker's periodic retrain "
                                   "still compare and record their decisions, but do not replace it "
                                   "(the decision's reason starts with \"pinned\"); promote and rollback "
                                   "refuse without --force. With VERSION, promote it by hand first."
                                   + announced)
    p.add_argument("version", metavar="VERSION", nargs="?", default=None,
                   help="promote this version first (default: pin the current champion)")
    p.add_argument("--reason", default=None, help="why (kept in the pin and the history)")
    p.add_argument("--force", action="store_true", help="with VERSION: replace a pinned champion")
    p.set_defaults(func=_run_pin)

    p = sub.add_parser("unpin", help="let train and retrain promote again",
                       description="Remove the pin: the next challenger that beats the champion is "
                                   "promoted. The champion itself does not change. " + where)
    p.add_argument("--reason", default=None, help="why (kept in the history)")
    p.set_defaults(func=_run_unpin)
