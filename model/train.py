"""Training the GNN lead model: ``train_gnn`` and the options it takes.

The options are typed and split by what they change (``model.gnn_options``): ``ArchOptions``
(the network), ``OptimOptions`` (the loop), ``SamplingOptions`` (big graphs), composed in
``TrainOptions``. ``TrainOptions.of`` takes any of them by name, without its section. The
loop itself is ``model.gnn_fit``, which ``GNNLeadModel.fit`` runs; this module sits above
``model.gnn`` and is never imported by it (docs/model.md#options-and-save-format).

Example:
    >>> TrainOptions().arch.hidden, TrainOptions().arch.layers
    (64, 2)
    >>> TrainOptions.of(hidden=32, epochs=10).optim.epochs
    10
"""
from __future__ import annotations

from typing import Optional

from leadpulse.model.base import ExampleSet
from leadpulse.model.gnn import GNNLeadModel
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

__all__ = ["train_gnn", "TrainOptions", "ArchOptions", "OptimOptions", "SamplingOptions", "Aggr",
           "Encoder", "Norm", "Loss", "Monitor"]


def train_gnn(train: ExampleSet, valid: Optional[ExampleSet] = None,
              options: Optional[TrainOptions] = None) -> GNNLeadModel:
    """Train a ``GNNLeadModel``: early stopping on validation AP, Platt calibration and tier
    cut points on the validation set (the training set when there is none)."""
    opts = options if options is not None else TrainOptions()
    return GNNLeadModel(opts).fit(train, valid, seed=opts.seed)
