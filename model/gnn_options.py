"""Options of the GNN lead model, typed and grouped by what they change.

* ``ArchOptions``: the network. A saved model rebuilds its modules from these alone.
* ``OptimOptions``: the training loop (loss, Adam, early stopping, weight average).
* ``SamplingOptions``: how graphs above ``max_full_nodes`` are cut to exact 2-hop subgraphs,
  in training and in scoring.
* ``TrainOptions``: the three, the feature vocabulary threshold, the seed and the career switch.

Every value is typed (enums, tuples). Comma lists are parsed at the CLI, never here.
``to_dict`` / ``from_dict`` give the JSON form in a saved model's model.json; older saves go
through ``model.gnn_format`` first (docs/model.md#options-and-save-format).

Example:
    >>> o = TrainOptions.of(hidden=32, aggr=("mean", "max"), epochs=10)
    >>> o.arch.hidden, o.arch.aggr, o.optim.epochs
    (32, (<Aggr.MEAN: 'mean'>, <Aggr.MAX: 'max'>), 10)
    >>> TrainOptions.from_dict(o.to_dict()) == o
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any, Optional, TypeVar

from leadpulse.schemas.types import CONTACT, NODE_TYPES

__all__ = ["Encoder", "Aggr", "Norm", "Loss", "Monitor", "ArchOptions", "OptimOptions",
           "SamplingOptions", "TrainOptions"]


class Encoder(Enum):
    """Per-node input map. With a linear map every first-round message is linear in the
    neighbour's features, so a sum over colleagues can only add them up; two relu layers
    (still node-local) let it count the colleagues *with* a property."""
    LINEAR = "linear"
    MLP = "mlp"


class Aggr(Enum):
    """Neighbour aggregation of a SAGEConv; all are 0 over an empty neighbourhood, which is
    what makes dropping an empty edge type exact (docs/model.md#architecture-modelgnnpy).
    ``LOGSUM`` is sign(s) log1p|s| of the sum ``s``."""
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    LOGSUM = "logsum"


class Norm(Enum):
    """Normalisation after each round. No batch norm: its statistics would make a lead's
    score depend on its batch."""
    NONE = "none"
    LAYER = "layer"


class Loss(Enum):
    FOCAL = "focal"
    WEIGHTED = "weighted"  # BCE with pos_weight = negatives / positives


class Monitor(Enum):
    AP = "ap"
    AUROC = "auroc"


E = TypeVar("E", bound=Enum)


def _enum(cls: type[E], value: Any, name: str) -> E:
    try:
        return cls(value)
    except ValueError:
        known = " or ".join(m.value for m in cls)
        raise ValueError(f"{name}: unknown value {value!r} ({known})") from None


def _tuple(value: Any, name: str) -> tuple:
    if isinstance(value, str):  # tuple("mean,max") would be a tuple of letters
        raise TypeError(f"{name}: a tuple of values, not the string {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class ArchOptions:
    """The network (``model.gnn_net.HeteroSAGE``).

    Args:
        hidden: embedding width. Default 64.
        layers: message-passing rounds (= hops of the receptive field). Default 2.
        dropout: dropout on hidden embeddings during training. Default 0.1.
        encoder: per-node input map (``Encoder``). Default ``Encoder.MLP``.
        aggr: aggregations every SAGEConv concatenates. "sum" and "max" carry what "mean"
            loses (how many colleagues are engaged, the best champion); "logsum" keeps counts
            informative from 1 to 1,000 neighbours without swamping the other terms.
            Default (MEAN, MAX, LOGSUM).
        degree: a learned term per edge type on log1p(in-degree), without bias so that an
            edge type without edges adds exactly 0. Default True.
        skip: the head sees the contact's input projection next to its final embedding.
            Default True.
        norm: ``Norm.LAYER`` is per-node LayerNorm after each round. Default ``Norm.NONE``.
        exclude_types: node types left out of message passing. Default none.
        ensemble: networks (seeds ``seed + 1000 i``) whose logits are averaged. Default 1.

    Strings are accepted for the enum fields and any iterable for the tuples; the stored
    values are always the enum members and tuples.
    """
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    encoder: Encoder = Encoder.MLP
    aggr: tuple[Aggr, ...] = (Aggr.MEAN, Aggr.MAX, Aggr.LOGSUM)
    degree: bool = True
    skip: bool = True
    norm: Norm = Norm.NONE
    exclude_types: tuple[str, ...] = ()
    ensemble: int = 1

    def __post_init__(self) -> None:
        # frozen: normalising the inputs in place is the one sanctioned use of object.__setattr__
        object.__setattr__(self, "encoder", _enum(Encoder, self.encoder, "encoder"))
        object.__setattr__(self, "norm", _enum(Norm, self.norm, "norm"))
        aggr = tuple(_enum(Aggr, a, "aggr") for a in _tuple(self.aggr, "aggr"))
        if not aggr:
            raise ValueError("aggr: at least one aggregation")
        object.__setattr__(self, "aggr", aggr)
        exclude = _tuple(self.exclude_types, "exclude_types")
        wrong = [t for t in exclude if t not in NODE_TYPES or t == CONTACT]
        if wrong:
            raise ValueError(f"exclude_types: {wrong} (node types other than {CONTACT!r})")
        object.__setattr__(self, "exclude_types", exclude)


@dataclass(frozen=True)
class OptimOptions:
    """The training loop (``model.gnn_fit``).

    Args:
        epochs: maximum passes over the training cutoffs. Default 150.
        lr: Adam learning rate. Default 3e-3.
        weight_decay: Adam weight decay. Default 1e-4.
        loss: ``Loss.FOCAL`` or ``Loss.WEIGHTED``. Default ``Loss.FOCAL``.
        focal_gamma: focusing exponent of the focal loss. Default 2.0.
        focal_alpha: weight of the positive class in the focal loss. Default 0.75.
        patience: epochs without a better monitored value before stopping. Default 20.
        monitor: early-stopping metric on validation (``Monitor``). Default ``Monitor.AP``.
        ema: per-step decay of an exponential moving average of the weights; when > 0 the
            average, not the last step, is monitored, kept and saved. With ~10 steps per
            epoch the raw weights jump between epochs and early stopping picks a lucky one.
            0 = off. Default 0.97 (a window of ~3 epochs of 9 cutoffs).
    """
    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: Loss = Loss.FOCAL
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75
    patience: int = 20
    monitor: Monitor = Monitor.AP
    ema: float = 0.97

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", _enum(Loss, self.loss, "loss"))
        object.__setattr__(self, "monitor", _enum(Monitor, self.monitor, "monitor"))


@dataclass(frozen=True)
class SamplingOptions:
    """Graphs too big for one full-batch forward.

    Args:
        max_full_nodes: graphs with more nodes are replaced by exact 2-hop subgraphs of a
            sample of their labelled contacts (and scored in chunks). Default 200_000.
        neg_per_pos: sampled training negatives per positive there. Default 20.
        min_negatives: at least this many negatives are sampled. Default 2_000.
        max_valid_seeds: uniform sample of validation contacts there, so calibration sees
            the true base rate. Default 20_000.
    """
    max_full_nodes: int = 200_000
    neg_per_pos: int = 20
    min_negatives: int = 2_000
    max_valid_seeds: int = 20_000


_SECTIONS = {"arch": ArchOptions, "optim": OptimOptions, "sampling": SamplingOptions}
#: the options outside the sections
_TOP = ("min_count", "seed", "career", "activity_days")
#: flat option name -> its section (names are unique across sections)
_SECTION_OF = {f.name: section for section, cls in _SECTIONS.items() for f in fields(cls)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``train_gnn`` needs; stored with the model.

    Args:
        arch: the network. Default ``ArchOptions()``.
        optim: the training loop. Default ``OptimOptions()``.
        sampling: big graphs. Default ``SamplingOptions()``.
        min_count: categorical values seen fewer times go to "other". Default 5.
        seed: default random seed (``fit(seed=...)`` overrides it). Default 0.
        career: the contacts' career features (``model.career``: former employers, a purchase
            championed there, days since the move). False leaves them out of the feature spec,
            the ablation of docs/model.md, "Job changes". Default True.
        activity_days: the activity window: a lead's graph carries only the activities of its
            last ``activity_days`` as nodes (``FeatureSpec.window``); its timeline aggregates
            (counts per window, ever, recency, order of key steps) still count every activity.
            It bounds what scoring an account reads as its history grows
            (docs/stream.md#known-limits-open-work). None: every activity. Default 30.
    """
    arch: ArchOptions = field(default_factory=ArchOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    min_count: int = 5
    seed: int = 0
    career: bool = True
    activity_days: Optional[float] = 30.0

    @classmethod
    def of(cls, **flat: Any) -> "TrainOptions":
        """The defaults with ``flat`` options changed, each named without its section:
        ``TrainOptions.of(hidden=32, epochs=10, seed=1)``."""
        return cls().replaced(**flat)

    def replaced(self, **flat: Any) -> "TrainOptions":
        """A copy with ``flat`` options (named without their section) changed."""
        by_section: dict[str, dict] = {}
        top = {}
        for name, value in flat.items():
            if name in _SECTION_OF:
                by_section.setdefault(_SECTION_OF[name], {})[name] = value
            elif name in _TOP:
                top[name] = value
            else:
                raise TypeError(f"unknown GNN option {name!r}")
        sections = {s: replace(getattr(self, s), **kw) for s, kw in by_section.items()}
        return replace(self, **sections, **top)

    def to_dict(self) -> dict:
        """JSON form: ``{"arch": {...}, "optim": {...}, "sampling": {...}, "min_count", "seed", "career",
        "activity_days"}``."""
        out: dict[str, Any] = {s: {f.name: _jsonable(getattr(getattr(self, s), f.name))
                                   for f in fields(cls)} for s, cls in _SECTIONS.items()}
        return {**out, "min_count": self.min_count, "seed": self.seed, "career": self.career,
                "activity_days": self.activity_days}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainOptions":
        """Inverse of ``to_dict`` (the current format only; an unknown key is an error)."""
        d = dict(d)
        sections = {s: sec_cls(**d.pop(s)) for s, sec_cls in _SECTIONS.items()}
        return cls(**sections, **d)
