"""Architecture options of the GNN: the MLP encoder and log-sum aggregation keep the model
invariants (a lead scores the same on its 2-hop subgraph as on the snapshot; save/load), and
models saved before the ``encoder`` option existed (format 1) still load with the linear encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leadpulse.model.features import khop_subgraph
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.gnn_format import FORMAT_VERSION
from leadpulse.model.gnn_net import LogSumAggregation
from leadpulse.model.train import Encoder, TrainOptions, train_gnn
from tests.model.test_gnn_options import as_v1
from tests.model.test_gnn_synth import make_examples, make_graph

OPTS = TrainOptions.of(epochs=6, patience=3, min_count=2, seed=5, hidden=16, encoder=Encoder.MLP,
                       aggr=("mean", "max", "logsum"))


@pytest.fixture(scope="module")
def model():
    return train_gnn(make_examples([1, 2]), make_examples([4]), OPTS)


def test_logsum_is_signed_log_of_the_sum_and_zero_when_empty():
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0], [5.0, 6.0]])
    out = LogSumAggregation()(x, torch.tensor([0, 0, 2]), dim_size=3)
    expected = torch.tensor([[np.log1p(4.0), -np.log1p(6.0)], [0.0, 0.0], [np.log1p(5.0), np.log1p(6.0)]],
                            dtype=torch.float32)
    torch.testing.assert_close(out, expected)


def test_mlp_logsum_subgraph_equals_snapshot(model):
    g, _ = make_graph(14, companies=50)
    ids = g.node_ids["contact"]
    full = model.predict_proba(g, ids)
    for seeds in ([0], [1, 2, 3], list(range(0, len(ids), 7))):
        sub = khop_subgraph(g, seeds)
        np.testing.assert_allclose(model.predict_proba(sub, [ids[i] for i in seeds]), full[seeds],
                                   atol=1e-5, rtol=0)


def test_mlp_save_load_identical(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = GNNLeadModel.load(tmp_path / "m")
    assert loaded.options == model.options and loaded.options.arch.encoder is Encoder.MLP
    g, _ = make_graph(13)
    ids = g.node_ids["contact"]
    np.testing.assert_array_equal(model.predict_proba(g, ids), loaded.predict_proba(g, ids))


def test_save_records_the_format_version_and_typed_options(model, tmp_path):
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 4
    assert meta["options"]["arch"]["aggr"] == ["mean", "max", "logsum"]
    assert TrainOptions.from_dict(meta["options"]) == model.options


def test_model_saved_without_encoder_option_loads_as_linear(tmp_path):
    opts = TrainOptions.of(epochs=2, patience=2, min_count=2, hidden=8, encoder="linear")
    old = train_gnn(make_examples([1]), make_examples([4]), opts)
    old.save(tmp_path / "old")
    meta_path = tmp_path / "old" / "model.json"
    meta = json.loads(meta_path.read_text())
    # as the first saves wrote it: format 1 had no version key and no encoder option
    del meta["format_version"]
    meta["options"] = {k: v for k, v in as_v1(old.options).items() if k not in ("encoder", "career", "activity_days")}
    meta_path.write_text(json.dumps(meta))
    loaded = GNNLeadModel.load(tmp_path / "old")
    # format 1 predates the career features and the activity window: the options say so, and the
    # saved spec (which records its window) still scores as it did
    assert loaded.options.arch.encoder is Encoder.LINEAR
    assert loaded.options == old.options.replaced(career=False, activity_days=None)
    g, _ = make_graph(13)
    ids = g.node_ids["contact"]
    np.testing.assert_array_equal(old.predict_proba(g, ids), loaded.predict_proba(g, ids))


def test_ema_training_is_deterministic_and_differs_from_raw_weights():
    g, _ = make_graph(12)
    ids = g.node_ids["contact"]
    kw = dict(epochs=4, patience=4, min_count=2, seed=7, hidden=8)
    runs = [train_gnn(make_examples([1, 2]), make_examples([4]), TrainOptions.of(**kw, ema=e)).predict_proba(g, ids)
            for e in (0.8, 0.8, 0.0)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.isfinite(runs[0]).all() and not np.allclose(runs[0], runs[2])


@pytest.mark.parametrize("arch", [
    {},  # the default: MLP encoder, mean/max/logsum, degree terms, skip
    {"encoder": "linear", "aggr": ("mean",), "degree": False, "skip": False},
    {"norm": "layer", "layers": 3},
    {"exclude_types": ("opportunity",)},
], ids=["default", "linear-mean", "layernorm-3-layers", "no-opportunities"])
def test_inference_computes_only_what_the_seeds_read_and_gives_the_whole_graphs_logits(model, arch):
    """Eval mode works each round on the rows the seeds' logits read (gnn_net._seeds_only);
    its logits must be those of the whole-graph rounds training runs, whatever the seeds and
    their order."""
    from leadpulse.model.features import to_hetero_data
    from leadpulse.model.gnn_net import build_net, edge_index_dict
    from leadpulse.model.gnn_options import ArchOptions

    torch.manual_seed(3)
    net = build_net(model.spec.dims(), ArchOptions(**{"hidden": 16, **arch})).eval()
    g, _ = make_graph(14, companies=50)
    data, _ = to_hetero_data(g, model.spec)
    x, edges = data.x_dict, edge_index_dict(data)
    n = len(g.node_ids["contact"])
    with torch.inference_mode():
        whole = net.head(net.embed(x, edges)).squeeze(-1)
        for seeds in ([0], [5, 1, 3], list(range(0, n, 7)), list(range(n))):
            got = net(x, edges, torch.tensor(seeds))
            torch.testing.assert_close(got, whole[seeds], atol=1e-6, rtol=0)
            reordered = net(x, edges, torch.tensor(seeds[::-1]))
            assert torch.equal(reordered, got.flip(0))  # bit for bit: the request order is irrelevant
