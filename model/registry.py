"""Versioned model artifacts on disk, the champion pointer and promotion decisions.

Layout (``root`` is any directory)::

    root/
      versions/<version>/          one directory per version, written once (tmp dir + rename)
        artifact.json              version, name, class, task, train_window, metrics,
                                   parent, created_at
        weights.pt, feature_spec.json, model.json   (whatever the model's save() writes)
      champion.json                {"version", "since", "reason"} (atomic replace)
      decisions/<n>-<challenger>.json   every promote_if_better decision, promoted or not

``metrics`` is a list of evaluations on held-out windows:
``[{"window": [start_micros, end_micros], "metrics": {"auroc": .., "ap": ..}}, ...]``.
Invariant 6: ``promote_if_better`` promotes only when the challenger beats the champion on the
most recent held-out window both were evaluated on (the challenger's latest window; the
champion is evaluated there through ``evaluate`` when it has no figure for it yet).

Example:
    >>> import tempfile
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> reg.champion() is None
    True
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

from leadpulse.model.base import LeadModel

logger = logging.getLogger(__name__)

__all__ = ["ModelRegistry", "Decision", "RegistryError"]

CHAMPION = "champion"
_ARTIFACT = "artifact.json"


class RegistryError(Exception):
    """A missing version, a corrupt artifact, or an impossible request."""


@dataclass(frozen=True)
class Decision:
    """The outcome of ``promote_if_better`` (also written to ``decisions/``)."""
    challenger: str
    champion: Optional[str]
    metric: str
    window: Optional[list[int]]
    challenger_value: Optional[float]
    champion_value: Optional[float]
    promoted: bool
    reason: str
    decided_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write_json(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


class ModelRegistry:
    """Artifacts under ``root`` (created if missing)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        (self.root / "decisions").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ writes
    def register(self, model: LeadModel, task: str, train_window: Sequence[int],
                 metrics: Sequence[dict] = (), parent: Optional[str] = None,
                 version: Optional[str] = None) -> str:
        """Save ``model`` as a new version and return its name (``<name>-v0001`` by default).

        Args:
            model: any fitted ``LeadModel``; its ``version`` attribute is set to the new version.
            task: the predictive query the model was trained for.
            train_window: ``[first cutoff, last cutoff]`` of the training examples (micros).
            metrics: held-out evaluations, ``[{"window": [start, end], "metrics": {...}}]``.
            parent: the version this one was retrained from (usually the champion).
            version: explicit name; must not exist yet.
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
                "created_at": _now(),
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
        self.artifact(version)  # must exist
        _write_json(self.root / "champion.json", {"version": version, "since": _now(), "reason": reason})

    # ------------------------------------------------------------------ reads
    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def champion(self) -> Optional[str]:
        path = self.root / "champion.json"
        return json.loads(path.read_text())["version"] if path.exists() else None

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
        return [json.loads(p.read_text()) for p in sorted((self.root / "decisions").glob("*.json"))]

    # ------------------------------------------------------------------ promotion
    def promote_if_better(self, challenger: str, metric: str = "auroc",
                          evaluate: Optional[Callable[[LeadModel, list[int]], dict]] = None,
                          min_delta: float = 0.0) -> Decision:
        """Promote ``challenger`` only if it beats the champion on the most recent window.

        Args:
            challenger: a registered version with at least one held-out evaluation.
            metric: the metric compared (higher is better). Default "auroc".
            evaluate: ``evaluate(model, window) -> metrics`` used when the champion has no
                figure for the challenger's latest window (the result is recorded). Default None.
            min_delta: the challenger must exceed the champion by more than this. Default 0.
        """
        art = self.artifact(challenger)
        champ = self.champion()
        windows = sorted(art["metrics"], key=lambda m: tuple(m["window"]))
        latest = windows[-1] if windows else None
        value = latest["metrics"].get(metric) if latest else None
        window = latest["window"] if latest else None

        def decide(promoted: bool, reason: str, champ_value: Optional[float] = None) -> Decision:
            d = Decision(challenger, champ, metric, window, value, champ_value, promoted, reason, _now())
            if promoted:
                self.set_champion(challenger, reason)
            n = len(list((self.root / "decisions").glob("*.json")))
            _write_json(self.root / "decisions" / f"{n:05d}-{challenger}.json", asdict(d))
            logger.info("promotion of %s: %s (%s)", challenger, promoted, reason)
            return d

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
