"""The save format of a GNN lead model's model.json, and the migration of older files.

model.json records ``format_version``. ``upgrade`` brings any readable file to the current
version, one explicit step per version, so ``GNNLeadModel.load`` reads one layout only and no
reader guesses what an absent key meant (docs/model.md#options-and-save-format).

* Version 1 (no ``format_version`` key): ``TrainOptions`` flat, lists as comma strings; a
  file written before an option existed does not mention it, and ``tier_rates`` / ``history``
  may be absent.
* Version 2: ``options`` is ``TrainOptions.to_dict()`` (sections ``arch``, ``optim``,
  ``sampling``; enums as their values, tuples as lists); every key is present.
* Version 3: ``options`` has ``career`` (the career features, ``model.career``). The code that
  wrote versions 1 and 2 had no career features: ``migrate_v2`` sets it False. (Scoring reads
  the columns the saved feature spec names, so an older model scores as it did either way.)
* Version 4: ``options`` has ``activity_days`` (the activity window, ``FeatureSpec.window``).
  Versions 1 to 3 read every activity: ``migrate_v3`` sets it None (their feature spec, saved
  without the key, encodes with no window either way).

Example:
    >>> upgrade({"options": {"hidden": 8, "aggr": "mean,max"}})["options"]["arch"]["aggr"]
    ['mean', 'max']
"""
from __future__ import annotations

__all__ = ["FORMAT_VERSION", "V1_DEFAULTS", "migrate_v1", "migrate_v2", "migrate_v3", "upgrade"]

FORMAT_VERSION = 4

#: what a version-1 file meant by an option it does not mention: what the code that wrote it
#: did. The options added after the first saves (the architecture options, ``ensemble``,
#: ``monitor``, ``ema``) are absent in files written before them, which ran the original
#: network (mean aggregation, linear encoder, no degree term, no skip), one network, early
#: stopping on AP and no weight average; any other absent option had its version-1 default.
#: Frozen: a later change of a default must not change what an old file means.
V1_DEFAULTS = {
    "hidden": 64, "layers": 2, "dropout": 0.1, "epochs": 150, "lr": 3e-3, "weight_decay": 1e-4,
    "loss": "focal", "focal_gamma": 2.0, "focal_alpha": 0.75, "patience": 20,
    "max_full_nodes": 200_000, "neg_per_pos": 20, "min_negatives": 2_000,
    "max_valid_seeds": 20_000, "min_count": 5, "seed": 0,
    "aggr": "mean", "degree": False, "skip": False, "norm": "none", "exclude_types": "",
    "encoder": "linear", "ensemble": 1, "monitor": "ap", "ema": 0.0,
}

#: the version-2 sections of the flat version-1 names (what is left stays at the top level)
_V2_SECTIONS = {
    "arch": ("hidden", "layers", "dropout", "encoder", "aggr", "degree", "skip", "norm",
             "exclude_types", "ensemble"),
    "optim": ("epochs", "lr", "weight_decay", "loss", "focal_gamma", "focal_alpha", "patience",
              "monitor", "ema"),
    "sampling": ("max_full_nodes", "neg_per_pos", "min_negatives", "max_valid_seeds"),
}


def _split(commas: str) -> list[str]:
    return [s.strip() for s in commas.split(",") if s.strip()]


def migrate_v1(meta: dict) -> dict:
    """A version-1 model.json as version 2 (a new dict; ``meta`` is not changed)."""
    flat = {**V1_DEFAULTS, **meta["options"]}
    flat["aggr"] = _split(flat["aggr"])
    flat["exclude_types"] = _split(flat["exclude_types"])
    options = {section: {k: flat.pop(k) for k in keys} for section, keys in _V2_SECTIONS.items()}
    options.update(flat)  # min_count, seed; an unknown key stays and loading rejects it
    return {"tier_rates": {}, "history": [], "version": None,
            **meta, "options": options, "format_version": 2}


def migrate_v2(meta: dict) -> dict:
    """A version-2 model.json as version 3 (a new dict): no career features."""
    return {**meta, "options": {**meta["options"], "career": False}, "format_version": 3}


def migrate_v3(meta: dict) -> dict:
    """A version-3 model.json as version 4 (a new dict): no activity window."""
    return {**meta, "options": {**meta["options"], "activity_days": None}, "format_version": 4}


def upgrade(meta: dict) -> dict:
    """``meta`` in the current format, migrated step by step from the version it records."""
    version = meta.get("format_version", 1)  # the key itself arrived with version 2
    if version == 1:
        meta, version = migrate_v1(meta), 2
    if version == 2:
        meta, version = migrate_v2(meta), 3
    if version == 3:
        meta, version = migrate_v3(meta), 4
    if version != FORMAT_VERSION:
        raise ValueError(f"model.json format_version {version!r}: this code reads up to {FORMAT_VERSION}")
    return meta
