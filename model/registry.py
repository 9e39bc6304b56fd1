"""Versioned model artifacts on disk, the champion pointer, its history, the pin and decisions.

Layout (``root`` is any directory)::

    root/
      versions/<version>/          one directory per version, written once (tmp dir + rename)
        artifact.json              version, name, class, task, train_window, metrics,
                                   parent, created_at
        weights.pt, feature_spec.json, model.json   (whatever the model's save() writes)
      champion.json                {"version", "since", "reason"} (atomic replace): the pointer
                                   workers poll
      champions.jsonl              append-only history, one line per change:
                                   {"at", "action", "version", "previous", "reason"}, action
                                   "promote", "rollback", "pin" or "unpin"
      pin.json                     {"since", "reason"} while the champion is pinned
      decisions/<n>-<challenger>.json   every decision: each promote_if_better (promoted or
                                   not, kind "compare"), each manual promotion ("manual")
                                   and rollback ("rollback")
      .lock                        serialises the writers of the files above (flock)

``metrics`` is a list of evaluations on held-out windows:
``[{"window": [start_micros, end_micros], "metrics": {"auroc": .., "ap": ..}}, ...]``.
Invariant 6: ``promote_if_better`` promotes only when the challenger beats the champion on the
most recent held-out window both were evaluated on (the challenger's latest window; the
champion is evaluated there through ``evaluate`` when it has no figure for it yet).

Champion history and rollback: replaying ``champions.jsonl`` gives a stack of champions, each
promotion pushing its version and each rollback popping the current one, so ``rollback()``
twice goes back two champions, and a rollback past the first champion is refused. A pin stops
``promote_if_better`` from replacing the champion (its decision is still recorded, the reason
starting with "pinned"); ``promote`` and ``rollback`` refuse a pinned registry unless forced,
and a forced change keeps the pin, now on the new champion.

Minimum data (docs/model.md#minimum-data): ``register(..., training_data={"examples": n,
"positives": p})`` records what a model learned from, with whether it is ``learned``
(``LeadModel.learned``: the rules baseline only calibrates a fixed ranking). A learned challenger
below ``promote_if_better(..., minimum=MinimumData(...))`` is not promoted, whatever its figure,
and the decision says why; versions registered without a count are not held to it.

Example:
    >>> import tempfile
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> reg.champion() is None
    True
    >>> reg.rollback()
    Traceback (most recent call last):
    ...
    leadpulse.model.registry.RegistryError: nothing to roll back to: no champion yet
"""
from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from leadpulse.model.base import LeadModel

logger = logging.getLogger(__name__)

__all__ = ["ModelRegistry", "Decision", "MinimumData", "FAMILIES", "RegistryError", "PinnedError"]

CHAMPION = "champion"
_ARTIFACT = "artifact.json"
_POINTER = "champion.json"
_HISTORY = "champions.jsonl"
_PIN = "pin.json"


class RegistryError(Exception):
    """A missing version, a corrupt artifact, or an impossible request."""


class PinnedError(RegistryError):
    """A manual change of the champion refused because the registry is pinned."""


@dataclass(frozen=True)
class Decision:
    """A decision about the champion (also written to ``decisions/``).

    ``kind`` is "compare" (``promote_if_better``), "manual" (``promote``, ``pin(version)``) or
    "rollback". Manual and rollback decisions carry the challenger's latest held-out figure and,
    when recorded, the champion's on the same window, for the record; they decide nothing.
    """
    challenger: str
    champion: Optional[str]
    metric: str
    window: Optional[list[int]]
    challenger_value: Optional[float]
    champion_value: Optional[float]
    promoted: bool
    reason: str
    decided_at: str
    kind: str = "compare"


#: the learned families ``train``/``retrain`` fit as candidates (``model.pipeline``), in the order
#: ties on validation are broken; here, not in the pipeline, so settings can check a list cheaply
FAMILIES: tuple[str, ...] = ("gnn", "lgbm_agg", "hybrid")


@dataclass(frozen=True)
class MinimumData:
    """The least training data a learned model is promoted on (docs/model.md#minimum-data).

    Args:
        positives: distinct leads with a positive label in the training and validation cutoffs.
            Default 120.
        examples: distinct leads with an example there. Default 1,000.
    """
    positives: int = 120
    examples: int = 1000

    def shortfall(self, data: Optional[dict]) -> Optional[str]:
        """Why ``data`` (``{"examples", "positives"}``) is too little, or None when it is enough
        (or unknown: a version registered without a count)."""
        if not data:
            return None
        short = [f"{int(data.get(k, 0)):,} {what} (minimum {need:,})"
                 for k, what, need in (("positives", "positive leads", self.positives),
                                       ("examples", "leads", self.examples))
                 if int(data.get(k, 0)) < need]
        if not short:
            return None
        return "too little training data for a learned model: " + " and ".join(short)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write_json(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def latest_window(artifact: dict) -> Optional[dict]:
    """The newest held-out evaluation of an artifact (``{"window", "metrics"}``), or None."""
    windows = sorted(artifact.get("metrics") or [], key=lambda m: tuple(m["window"]))
    return windows[-1] if windows else None


class ModelRegistry:
    """Artifacts under ``root`` (created if missing)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        (self.root / "decisions").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ writes
    def register(self, model: LeadModel, task: str, train_window: Sequence[int],
                 metrics: Sequence[dict] = (), parent: Optional[str] = None,
                 version: Optional[str] = None, training_data: Optional[dict] = None) -> str:
        """Save ``model`` as a new version and return its name (``<name>-v0001`` by default).

        Args:
            model: any fitted ``LeadModel``; its ``version`` attribute is set to the new version.
            task: the predictive query the model was trained for.
            train_window: ``[first cutoff, last cutoff]`` of the training examples (micros).
            metrics: held-out evaluations, ``[{"window": [start, end], "metrics": {...}}]``.
            parent: the version this one was retrained from (usually the champion).
            version: explicit name; must not exist yet.
            training_data: what it learned from, ``{"examples": n, "positives": p}`` (distinct
                leads), checked by ``promote_if_better(minimum=...)``. Default None (unknown).
        """
        version = version or self._next_version(model.name or "model")
        final = self.root / "versions" / version
        if final.exists():
            raise RegistryError(f"version {version} already exists")
        model.version = version
        tmp = Path(tempfile.mkdtemp(dir=self.root / "versions", prefix=f".{version}."))
        try:
            model.save(tmp)
            cls = type(model)
            _write_json(tmp / _ARTIFACT, {
                "version": version, "name": model.name, "class": f"{cls.__module__}:{cls.__qualname__}",
                "task": task, "train_window": [int(x) for x in train_window],
                "metrics": [self._window_entry(m) for m in metrics], "parent": parent,
                "created_at": _now(), "learned": bool(getattr(model, "learned", True)),
                "training_data": {k: int(v) for k, v in training_data.items()} if training_data else None,
            })
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("registered %s (parent %s)", version, parent)
        return version

    def add_metrics(self, version: str, window: Sequence[int], metrics: dict) -> None:
        """Record (or replace) ``version``'s metrics on held-out ``window``."""
        art = self.artifact(version)
        entry = self._window_entry({"window": window, "metrics": metrics})
        art["metrics"] = [m for m in art["metrics"] if m["window"] != entry["window"]] + [entry]
        _write_json(self._dir(version) / _ARTIFACT, art)

    def set_champion(self, version: str, reason: str) -> None:
        """Point the champion at ``version`` and append the change to the history.

        The primitive under every promotion: it neither checks the pin nor records a decision
        (``promote`` does both).
        """
        with self._lock():
            self._set_champion(version, reason, "promote")

    # ------------------------------------------------------------------ reads
    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def champion(self) -> Optional[str]:
        pointer = self._pointer()
        return pointer["version"] if pointer else None

    def champion_reason(self) -> Optional[str]:
        """Why the champion is the champion (the reason of its promotion), or None."""
        pointer = self._pointer()
        return pointer.get("reason") if pointer else None

    def pinned(self) -> Optional[dict]:
        """The pin (``{"since", "reason"}``) while the champion is pinned, else None."""
        path = self.root / _PIN
        return json.loads(path.read_text()) if path.exists() else None

    def champion_history(self) -> list[dict]:
        """Every change of the champion and of the pin, oldest first
        (``{"at", "action", "version", "previous", "reason"}``).

        A registry whose champion was set before the history existed starts with that champion.
        """
        path = self.root / _HISTORY
        if not path.exists():
            pointer = self._pointer()
            return [self._seed(pointer)] if pointer else []
        lines = path.read_text().splitlines()
        entries = []
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError as exc:
                if n == len(lines) - 1:  # a write cut short: the pointer was written before it
                    logger.warning("ignoring a torn last line of %s", path)
                    continue
                raise RegistryError(f"{path} line {n + 1} is not JSON ({exc}); repair or remove the line") from exc
        return entries

    def artifact(self, version: str) -> dict:
        path = self._dir(version) / _ARTIFACT
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {path}: {exc}; remove the directory or re-register") from exc

    def load(self, version: str = CHAMPION) -> LeadModel:
        """Load a version (or ``"champion"``); the model's ``version`` attribute names it."""
        if version == CHAMPION:
            champ = self.champion()
            if champ is None:
                raise RegistryError("no champion yet")
            version = champ
        art = self.artifact(version)
        module, _, qual = art["class"].partition(":")
        cls = getattr(importlib.import_module(module), qual)
        model = cls.load(self._dir(version))
        model.version = version
        return model

    def decisions(self) -> list[dict]:
        """Every recorded decision, oldest first (those written before kinds existed are "compare")."""
        return [{"kind": "compare", **json.loads(p.read_text())}
                for p in sorted((self.root / "decisions").glob("*.json"))]

    # ------------------------------------------------------------------ promotion
    def promote_if_better(self, challenger: str, metric: str = "auroc",
                          evaluate: Optional[Callable[[LeadModel, list[int]], dict]] = None,
                          min_delta: float = 0.0, minimum: Optional[MinimumData] = None,
                          note: Optional[str] = None) -> Decision:
        """Promote ``challenger`` only if it beats the champion on the most recent window.

        The decision is recorded either way. While the registry is pinned nothing is promoted:
        the comparison is still made and recorded, its reason starting with "pinned". A champion
        changed by someone else during the comparison is not replaced either.

        Args:
            challenger: a registered version with at least one held-out evaluation.
            metric: the metric compared (higher is better). Default "auroc".
            evaluate: ``evaluate(model, window) -> metrics`` used when the champion has no
                figure for the challenger's latest window (the result is recorded). Default None.
            min_delta: the challenger must exceed the champion by more than this. Default 0.
            minimum: a learned challenger trained on less than this is not promoted (its
                artifact's ``training_data``); the reason says what was short. Default None.
            note: put before the reason (why this challenger is being decided on: "fallback for
                gnn-v0003 (...)"). Default None.
        """
        art = self.artifact(challenger)
        champ = self.champion()
        latest = latest_window(art)
        value = latest["metrics"].get(metric) if latest else None
        window = latest["window"] if latest else None

        def decide(promoted: bool, reason: str, champ_value: Optional[float] = None) -> Decision:
            reason = f"{note}; {reason}" if note else reason
            with self._lock():
                now, pin = self.champion(), self.pinned()
                if now != champ:
                    promoted, reason = False, (f"the champion changed from {champ} to {now} during the "
                                               f"comparison; not promoted (the comparison: {reason})")
                elif pin is not None:
                    verdict = "would have been promoted" if promoted else "not promoted either"
                    promoted, reason = False, (f"pinned: the registry is pinned on {champ} since {pin['since']} "
                                               f"({pin['reason']}); {verdict}: {reason}")
                d = Decision(challenger, champ, metric, window, value, champ_value, promoted, reason, _now())
                if promoted:
                    self._set_champion(challenger, reason, "promote")
                self._record(d)
            logger.info("promotion of %s: %s (%s)", challenger, promoted, reason)
            return d

        short = minimum.shortfall(art.get("training_data")) if minimum and art.get("learned", True) else None
        if short is not None:
            return decide(False, short)
        if latest is None:
            return decide(False, "challenger was not evaluated on any held-out window")
        if champ is None:
            # Any evaluated model beats scoring nothing; the first one is promoted even when its window
            # could not measure the metric (e.g. no positives), and the reason says so.
            shown = f"{value:.4f}" if value is not None else "unmeasured"
            return decide(True, f"no champion yet; challenger {metric}={shown} on window {window}")
        if value is None:
            return decide(False, f"challenger has no {metric} on a held-out window")
        if champ == challenger:
            return decide(False, "challenger is already the champion")
        champ_metrics = next((m["metrics"] for m in self.artifact(champ)["metrics"]
                              if m["window"] == window), None)
        if (champ_metrics is None or metric not in champ_metrics) and evaluate is not None:
            champ_metrics = evaluate(self.load(champ), window)
            self.add_metrics(champ, window, champ_metrics)
        if champ_metrics is None or champ_metrics.get(metric) is None:
            return decide(False, f"champion {champ} has no {metric} on window {window}; "
                                 "evaluate it there before comparing")
        cv = float(champ_metrics[metric])
        if value > cv + min_delta:
            return decide(True, f"{metric} {value:.4f} > champion {champ} {cv:.4f} on window {window}", cv)
        return decide(False, f"{metric} {value:.4f} does not beat champion {champ} {cv:.4f} "
                             f"(min_delta {min_delta}) on window {window}", cv)

    def promote(self, version: str, reason: str, force: bool = False) -> Decision:
        """Make ``version`` the champion by hand, recording a "manual" decision with ``reason``.

        Raises:
            RegistryError: ``version`` is unknown or already the champion.
            PinnedError: the registry is pinned and ``force`` is false (forced, the pin stays,
                now on ``version``).
        """
        with self._lock():
            return self._promote(version, reason, force)

    def rollback(self, reason: str = "", force: bool = False) -> Decision:
        """Restore the champion before the current one (see the module's docstring).

        Recorded as a history entry with action "rollback" and reason "rollback" (or
        "rollback: <reason>"), and as a "rollback" decision.

        Raises:
            RegistryError: no champion, or the current one is the first in the history, or the
                previous champion's directory is gone.
            PinnedError: the registry is pinned and ``force`` is false.
        """
        with self._lock():
            stack = self._stack()
            if not stack:
                raise RegistryError("nothing to roll back to: no champion yet")
            if len(stack) == 1:
                raise RegistryError(f"nothing to roll back to: {stack[0]} is the first champion in the history")
            current, target = stack[-1], stack[-2]
            self._check_pin(force, f"roll back from {current} to {target}")
            try:
                self.artifact(target)
            except RegistryError as exc:
                raise RegistryError(f"cannot roll back to {target}, the champion before {current}: {exc}") from exc
            text = "rollback" + (f": {reason}" if reason else "")
            d = self._manual_decision(target, current, text, "rollback")
            self._set_champion(target, text, "rollback")
            self._record(d)
        logger.info("rolled back from %s to %s", current, target)
        return d

    def pin(self, version: Optional[str] = None, reason: str = "", force: bool = False) -> Optional[Decision]:
        """Pin the champion, first promoting ``version`` by hand when it is given and not the
        champion; the manual decision, if any. Pinning a pinned registry keeps the first pin.

        Raises:
            RegistryError: no champion and no ``version``, or ``version`` is unknown.
            PinnedError: ``version`` would replace a pinned champion and ``force`` is false.
        """
        with self._lock():
            decision = None
            champ = self.champion()
            if version is not None and version != champ:
                decision = self._promote(version, "pinned" + (f": {reason}" if reason else ""), force)
                champ = version
            if champ is None:
                raise RegistryError("nothing to pin: no champion yet; name a version to promote and pin")
            if self.pinned() is None:
                now = _now()
                _write_json(self.root / _PIN, {"since": now, "reason": reason or "pinned"})
                self._append({"at": now, "action": "pin", "version": champ, "previous": champ,
                              "reason": reason or "pinned"})
                logger.info("pinned %s", champ)
        return decision

    def unpin(self, reason: str = "") -> Optional[dict]:
        """Let ``promote_if_better`` replace the champion again; the removed pin, or None."""
        with self._lock():
            pin = self.pinned()
            if pin is not None:
                champ = self.champion()
                (self.root / _PIN).unlink()
                self._append({"at": _now(), "action": "unpin", "version": champ, "previous": champ,
                              "reason": reason or "unpinned"})
                logger.info("unpinned %s", champ)
        return pin

    # ------------------------------------------------------------------ helpers
    def _dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"bad version name {version!r}")
        path = self.root / "versions" / version
        if not path.is_dir():
            raise RegistryError(f"unknown version {version!r} in {self.root}")
        return path

    def _next_version(self, name: str) -> str:
        n = sum(1 for v in self.versions() if v.startswith(f"{name}-v")) + 1
        while (self.root / "versions" / f"{name}-v{n:04d}").exists():
            n += 1
        return f"{name}-v{n:04d}"

    @staticmethod
    def _window_entry(m: dict) -> dict:
        window = [int(x) for x in m["window"]]
        if len(window) != 2:
            raise RegistryError(f"a window is [start, end], got {m['window']}")
        return {"window": window, "metrics": {k: float(v) for k, v in m["metrics"].items()}}

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise the writers of the pointer, the history, the pin and the decisions (not
        reentrant: the underscore methods below expect it held)."""
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _pointer(self) -> Optional[dict]:
        path = self.root / _POINTER
        return json.loads(path.read_text()) if path.exists() else None

    @staticmethod
    def _seed(pointer: dict) -> dict:
        return {"at": pointer.get("since"), "action": "promote", "version": pointer["version"],
                "previous": None, "reason": pointer.get("reason", "")}

    def _append(self, entry: dict) -> None:
        with open(self.root / _HISTORY, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _set_champion(self, version: str, reason: str, action: str) -> None:
        self.artifact(version)  # must exist
        pointer = self._pointer()
        if pointer is not None and not (self.root / _HISTORY).exists():
            self._append(self._seed(pointer))  # a registry from before the history
        now = _now()
        # the pointer first: a crash before the history line leaves a pointer that _stack() puts on top
        _write_json(self.root / _POINTER, {"version": version, "since": now, "reason": reason})
        self._append({"at": now, "action": action, "version": version,
                      "previous": pointer["version"] if pointer else None, "reason": reason})

    def _stack(self) -> list[str]:
        """The champions a rollback walks back through, the current one last."""
        stack: list[str] = []
        for entry in self.champion_history():
            action, version = entry.get("action", "promote"), entry["version"]
            if action == "rollback" and stack:
                stack.pop()
            if action in ("promote", "rollback") and (not stack or stack[-1] != version):
                stack.append(version)
        current = self.champion()
        if current is not None and (not stack or stack[-1] != current):
            stack.append(current)  # the pointer was changed outside the history
        return stack

    def _check_pin(self, force: bool, change: str) -> None:
        pin = self.pinned()
        if pin is not None and not force:
            raise PinnedError(f"the registry is pinned on {self.champion()} since {pin['since']} "
                              f"({pin['reason']}): refusing to {change} unless forced")

    def _promote(self, version: str, reason: str, force: bool) -> Decision:
        self.artifact(version)  # must exist
        champ = self.champion()
        if champ == version:
            raise RegistryError(f"{version} is already the champion")
        self._check_pin(force, f"promote {version}")
        text = f"manual: {reason}"
        d = self._manual_decision(version, champ, text, "manual")
        self._set_champion(version, text, "promote")
        self._record(d)
        logger.info("promoted %s by hand (%s)", version, reason)
        return d

    def _manual_decision(self, version: str, champ: Optional[str], reason: str, kind: str,
                         metric: str = "auroc") -> Decision:
        latest = latest_window(self.artifact(version))
        window = latest["window"] if latest else None
        value = latest["metrics"].get(metric) if latest else None
        champ_value = None
        if champ is not None and window is not None:
            try:
                champ_value = next((m["metrics"].get(metric) for m in self.artifact(champ)["metrics"]
                                    if m["window"] == window), None)
            except RegistryError:  # a champion whose directory is gone: the change repairs that
                pass
        return Decision(version, champ, metric, window, value, champ_value, True, reason, _now(), kind)

    def _record(self, d: Decision) -> None:
        n = len(list((self.root / "decisions").glob("*.json")))
        _write_json(self.root / "decisions" / f"{n:05d}-{d.challenger}.json", asdict(d))
