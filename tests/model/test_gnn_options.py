"""The GNN's options (typed, split by what they change) and model.json's format version: a
current save records it, and a version-1 file migrates to the options it was written with."""
from __future__ import annotations

import doctest

import pytest

import leadpulse.model.calibration
import leadpulse.model.gnn_format
import leadpulse.model.gnn_options
import leadpulse.model.train
from leadpulse.model.gnn_format import FORMAT_VERSION, upgrade
from leadpulse.model.gnn_options import (
    Aggr,
    ArchOptions,
    Encoder,
    Loss,
    Monitor,
    Norm,
    OptimOptions,
    SamplingOptions,
    TrainOptions,
)

#: ``options`` of a model.json written by the version-1 code with its defaults, verbatim
V1_DEFAULT_OPTIONS = {
    "hidden": 64, "layers": 2, "dropout": 0.1, "epochs": 150, "lr": 0.003, "weight_decay": 0.0001,
    "loss": "focal", "focal_gamma": 2.0, "focal_alpha": 0.75, "patience": 20, "max_full_nodes": 200000,
    "neg_per_pos": 20, "min_negatives": 2000, "max_valid_seeds": 20000, "min_count": 5, "seed": 0,
    "aggr": "mean,max,logsum", "degree": True, "skip": True, "norm": "none", "exclude_types": "",
    "ensemble": 1, "monitor": "ap", "encoder": "mlp", "ema": 0.97,
}


def as_v1(opts: TrainOptions) -> dict:
    """``opts`` as the version-1 code saved them: flat, lists as comma strings."""
    d = opts.to_dict()
    flat = {**d.pop("arch"), **d.pop("optim"), **d.pop("sampling"), **d}
    return {k: ",".join(v) if isinstance(v, list) else v for k, v in flat.items()}


def _migrated(options: dict) -> TrainOptions:
    return TrainOptions.from_dict(upgrade({"options": options, "tier_cuts": [1, 1, 1]})["options"])


def _before_careers(o: TrainOptions) -> TrainOptions:
    """``o`` as a file written before the career features means it: without them (and, older
    than the activity window too, with every activity)."""
    return o.replaced(career=False, activity_days=None)


def test_defaults_are_typed_and_unchanged():
    o = TrainOptions()
    assert o.arch == ArchOptions(hidden=64, layers=2, dropout=0.1, encoder=Encoder.MLP,
                                 aggr=(Aggr.MEAN, Aggr.MAX, Aggr.LOGSUM), degree=True, skip=True,
                                 norm=Norm.NONE, exclude_types=(), ensemble=1)
    assert o.optim == OptimOptions(epochs=150, lr=3e-3, weight_decay=1e-4, loss=Loss.FOCAL, focal_gamma=2.0,
                                   focal_alpha=0.75, patience=20, monitor=Monitor.AP, ema=0.97)
    assert o.sampling == SamplingOptions(max_full_nodes=200_000, neg_per_pos=20, min_negatives=2_000,
                                         max_valid_seeds=20_000)
    assert (o.min_count, o.seed, o.career, o.activity_days) == (5, 0, True, 30.0)


def test_flat_constructor_routes_names_and_coerces_values():
    o = TrainOptions.of(hidden=16, aggr=["sum", Aggr.MAX], exclude_types=["activity"], loss="weighted",
                        max_full_nodes=10, seed=3)
    assert o.arch.hidden == 16 and o.arch.aggr == (Aggr.SUM, Aggr.MAX)
    assert o.arch.exclude_types == ("activity",) and o.optim.loss is Loss.WEIGHTED
    assert o.sampling.max_full_nodes == 10 and o.seed == 3
    assert o.replaced(hidden=8).arch == ArchOptions(hidden=8, aggr=("sum", "max"), exclude_types=("activity",))


@pytest.mark.parametrize("kw, error", [
    ({"aggr": "mean,max"}, TypeError),  # comma lists are parsed at the CLI, not here
    ({"aggr": ()}, ValueError),
    ({"aggr": ("median",)}, ValueError),
    ({"encoder": "gru"}, ValueError),
    ({"norm": "batch"}, ValueError),
    ({"monitor": "loss"}, ValueError),
    ({"exclude_types": ("contact",)}, ValueError),
    ({"exclude_types": ("planet",)}, ValueError),
    ({"hiddn": 3}, TypeError),
])
def test_bad_options_fail_at_construction(kw, error):
    with pytest.raises(error):
        TrainOptions.of(**kw)


def test_json_round_trip():
    o = TrainOptions.of(hidden=8, aggr=("mean",), norm="layer", exclude_types=("activity",), monitor="auroc",
                        ensemble=2, min_count=2, seed=9)
    d = o.to_dict()
    assert d["arch"]["aggr"] == ["mean"] and d["arch"]["norm"] == "layer" and d["optim"]["monitor"] == "auroc"
    assert TrainOptions.from_dict(d) == o
    with pytest.raises(TypeError):
        TrainOptions.from_dict({**d, "arch": {**d["arch"], "width": 3}})


def test_v1_file_migrates_to_the_same_options():
    assert _migrated(V1_DEFAULT_OPTIONS) == _before_careers(TrainOptions())
    o = TrainOptions.of(hidden=16, layers=3, aggr=("mean", "sum"), exclude_types=("activity", "order"),
                        encoder="linear", norm="layer", loss="weighted", monitor="auroc", ema=0.0,
                        ensemble=2, max_full_nodes=50, min_count=2, seed=4)
    assert as_v1(o)["aggr"] == "mean,sum"
    assert _migrated({k: v for k, v in as_v1(o).items() if k != "career"}) == _before_careers(o)


def test_v2_file_means_no_career_features():
    o = TrainOptions.of(hidden=16, seed=4)
    v2 = {k: v for k, v in o.to_dict().items() if k != "career"}
    meta = upgrade({"format_version": 2, "options": v2})
    assert meta["format_version"] == FORMAT_VERSION == 4
    assert TrainOptions.from_dict(meta["options"]) == o.replaced(career=False, activity_days=None)
    assert TrainOptions.of(career=False).to_dict()["career"] is False


def test_v3_file_means_no_activity_window():
    o = TrainOptions.of(hidden=16, seed=4)
    assert o.activity_days == 30.0 and o.to_dict()["activity_days"] == 30.0
    v3 = {k: v for k, v in o.to_dict().items() if k != "activity_days"}
    meta = upgrade({"format_version": 3, "options": v3})
    assert meta["format_version"] == FORMAT_VERSION == 4
    assert TrainOptions.from_dict(meta["options"]) == o.replaced(activity_days=None)
    assert TrainOptions.of(activity_days=7).activity_days == 7


def test_v1_file_without_the_later_options_means_the_original_network():
    first = {k: v for k, v in V1_DEFAULT_OPTIONS.items()
             if k not in ("aggr", "degree", "skip", "norm", "exclude_types", "ensemble", "monitor",
                          "encoder", "ema")}
    o = _migrated(first)
    assert o.arch == ArchOptions(encoder=Encoder.LINEAR, aggr=(Aggr.MEAN,), degree=False, skip=False)
    assert o.optim == OptimOptions(ema=0.0)
    meta = upgrade({"options": first})
    assert meta["format_version"] == FORMAT_VERSION == 4
    assert (meta["tier_rates"], meta["history"], meta["version"]) == ({}, [], None)


def test_current_format_passes_and_a_newer_one_is_refused():
    meta = {"format_version": FORMAT_VERSION, "options": TrainOptions().to_dict()}
    assert upgrade(meta) is meta
    with pytest.raises(ValueError, match="format_version"):
        upgrade({**meta, "format_version": FORMAT_VERSION + 1})


@pytest.mark.parametrize("module", [leadpulse.model.gnn_options, leadpulse.model.gnn_format,
                                    leadpulse.model.calibration, leadpulse.model.train])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0
