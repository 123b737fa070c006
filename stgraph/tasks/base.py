"""What every task is: the seam between the data and the one trainer, tracker, CLI and serving.

A task knows what a sample is and everything that depends on it; the layers above it know only
this protocol:

- **batches**: lazy `Batch` objects of a split, cut into micro-batches by ``Batch.split``. A batch
  keeps the model's ``inputs`` apart from the ``targets``, and the trainer hands a model
  ``batch.inputs`` alone, so no ``forward`` can read a target.
- **loss**: a `Loss` of (sum, weight) pairs. The trainer back-propagates sums and divides the
  gradients by the whole batch's weight once, so micro-batches and DDP ranks give exactly the
  gradient of one full batch.
- **metrics**: accumulated over a whole split (`stgraph.metrics`), with the monitored metric and
  whether it is minimised or maximised.
- **reports**: figures and tables for the tracker.
- **serving**: `export` holds what a served model needs (scalers, ids, vocabularies) and
  ``predictor_class`` turns it, with the trained model, into a `Predictor`.
- **train-only data**: `TrainView` is the only door to data that fitted statistics (scalers,
  data-driven graphs, a model's ``fit_train``) may go through.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import torch

from stgraph.data.views import TrainView
from stgraph.graphs.graph import Graph
from stgraph.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from stgraph.data.config import DataConfig
    from stgraph.metrics import SplitMetrics

Goal = Literal["min", "max"]
T = TypeVar("T", bound="Tensors")


@dataclass(frozen=True)
class Tensors:
    """A group of tensors that share their first (sample) dimension."""

    def to(self: T, device: torch.device | str) -> T:
        return dataclasses.replace(self, **{k: v.to(device) for k, v in self._tensors().items()})

    def split(self: T, size: int) -> list[T]:
        """Consecutive groups of at most ``size`` samples (views, no copies)."""
        parts = {k: v.split(size) for k, v in self._tensors().items()}
        count = len(next(iter(parts.values())))
        return [
            dataclasses.replace(self, **{k: v[i] for k, v in parts.items()}) for i in range(count)
        ]

    def __len__(self) -> int:
        return next(iter(self._tensors().values())).shape[0]

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }


In = TypeVar("In", bound=Tensors)
Y = TypeVar("Y", bound=Tensors)


@dataclass(frozen=True)
class Batch(Generic[In, Y]):
    """``inputs`` are all a model may read; ``targets`` are read by the task's loss and metrics."""

    inputs: In
    targets: Y

    def to(self, device: torch.device | str) -> Batch[In, Y]:
        return Batch(self.inputs.to(device), self.targets.to(device))

    def split(self, size: int) -> list[Batch[In, Y]]:
        return [Batch(i, t) for i, t in zip(self.inputs.split(size), self.targets.split(size))]

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class Loss:
    """A batch's loss as sums over its samples and the weight that normalises them.

    ``terms`` are the named parts (e.g. ``mae``, or ``ranking`` and ``category`` for a multi-task
    model), each a sum over the batch; ``total`` is their weighted sum and the loss of the batch
    is ``total / weight``.
    """

    total: torch.Tensor
    weight: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def weighted(
        cls, terms: Mapping[str, torch.Tensor], weights: Mapping[str, float], weight: torch.Tensor
    ) -> Loss:
        """``total = sum(weights[name] * terms[name])``; a term of weight 0 is not computed in."""
        total = sum(weights.get(name, 1.0) * value for name, value in terms.items())
        return cls(torch.as_tensor(total), weight, dict(terms))

    def mean(self) -> torch.Tensor:
        """The batch's loss on its own: ``total / weight`` (a weight of 0 counts as 1)."""
        return self.total / self.weight.clamp_min(1)


@dataclass(frozen=True)
class ModelContext:
    """Facts about the data a model is built for (not hyperparameters). Each task subclasses it
    with its own facts; ``graphs`` names every graph of the task (a road graph; a location graph
    and a bipartite location-category graph; a stock graph)."""

    @property
    def graphs(self) -> Mapping[str, Graph]:
        return {}


@dataclass
class Report:
    """What a task hands the tracker after scoring a split."""

    figures: dict[str, Any] = field(default_factory=dict)  # artifact path -> matplotlib Figure
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # artifact path -> table


class Predictor(ABC):
    """A trained model wrapped for serving: recent data in, a prediction table out.

    One table row per predicted item, with an ``as_of`` column (the time the prediction is made
    from) and a ``horizon`` column (1 = the next step), so that forecast jobs can store, resume
    and score predictions of every task alike.
    """

    #: what `realised_errors` measures, in metric names (``mae``: absolute error)
    error_name: ClassVar[str] = "mae"

    @property
    @abstractmethod
    def rows_per_prediction(self) -> int:
        """Rows of one complete prediction table (a job's output is complete with this many)."""

    @abstractmethod
    def read_input(
        self, input_file: str | Path | None, dataset: str | None, data_dir: str | Path | None
    ) -> Any:
        """Recent data from a file or a dataset, validated against the model's training data."""

    @abstractmethod
    def last_time(self, data: Any) -> pd.Timestamp:
        """The latest time ``data`` reaches (the default ``as_of``)."""

    @abstractmethod
    def parse_time(self, value: Any, data: Any, what: str) -> pd.Timestamp:
        """``value`` as a time comparable with ``data``'s (``what`` names the option)."""

    @abstractmethod
    def predict(self, data: Any, as_of: Any = None) -> pd.DataFrame:
        """The prediction table made at ``as_of`` (default: `last_time`)."""

    @abstractmethod
    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The prediction for a request table (MLflow pyfunc, ``mlflow models serve``)."""

    @abstractmethod
    def realised_errors(self, predictions: pd.DataFrame, data: Any) -> pd.DataFrame:
        """Past predictions joined with what has since been observed:
        columns ``as_of``, ``horizon``, ``error`` (absolute), one row per scored item."""

    @abstractmethod
    def describe_input(self, data: Any, as_of: Any) -> dict[str, Any]:
        """Provenance of ``data``: ``source`` and ``sha256``, and under ``metrics`` numbers worth
        tracking per call (rows read, how complete the input before ``as_of`` was)."""


class Task(ABC):
    """One kind of problem. Subclasses register themselves in `TASKS` by name."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    predictor_class: ClassVar[type[Predictor]]
    #: the model a pipeline without a ``model.name`` uses
    default_model: ClassVar[str]
    #: what one sample is called in messages ("windows", "sessions")
    sample_noun: ClassVar[str] = "samples"
    #: the data's name (run names, experiments, error messages)
    dataset_name: str
    context: ModelContext
    train_view: TrainView
    #: the validation metric that early stopping and model selection watch by default
    monitor: str

    @classmethod
    @abstractmethod
    def build(cls, data: DataConfig, config: Any) -> Task:
        """Load the data ``data`` names and prepare the task (splits, train-only statistics)."""

    @abstractmethod
    def goal(self, metric: str) -> Goal:
        """Whether ``metric`` is minimised (errors) or maximised (accuracies, correlations)."""

    @abstractmethod
    def num_samples(self, split: str) -> int: ...

    @abstractmethod
    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        limit: int | None = None,
    ) -> Iterator[Batch]:
        """Batches of ``split``. Shuffling depends only on ``(seed, epoch)`` (a resumed run sees
        the same order); with ``world_size > 1`` each rank gets an equal share."""

    def num_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        per_rank = self.num_samples(split)
        if world_size > 1:
            per_rank //= world_size
        return -(-per_rank // batch_size)

    @abstractmethod
    def loss(self, output: Any, batch: Batch) -> Loss:
        """The loss sums of ``batch`` (or of one micro-batch of it) and their weight."""

    @abstractmethod
    def loss_weight(self, batch: Batch, output: Any) -> torch.Tensor:
        """The weight `loss` gives the whole ``batch`` when the model answers like ``output``
        (the output of its first micro-batch). The trainer divides every micro-batch's sum by
        it before back-propagating, so the gradients add up to the full batch's exactly."""

    @abstractmethod
    def predict(self, output: Any, batch: Batch, split: str) -> Any:
        """The model's output as a prediction in the data's own terms (units, ids)."""

    @abstractmethod
    def new_metrics(self) -> SplitMetrics: ...

    @abstractmethod
    def update_metrics(self, metrics: SplitMetrics, prediction: Any, batch: Batch) -> None: ...

    def report(
        self, split: str, metrics: SplitMetrics, predictions: list[Any], model_name: str
    ) -> Report:
        """Figures and tables of a scored split (default: none); ``model_name`` for titles."""
        return Report()

    @abstractmethod
    def export(self) -> dict[str, Any]:
        """What ``predictor_class`` needs besides the model: scalers, ids, the input signature."""


def anchor_batches(
    anchors: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    limit: int | None,
) -> Iterator[torch.Tensor]:
    """Consecutive groups of ``batch_size`` sample indices: shuffled by ``(seed, epoch)`` alone
    (a resumed run sees the same order), in equal shares per rank (a rank with one batch more
    would wait forever in DDP's all-reduce), at most ``limit`` groups."""
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        anchors = anchors[torch.randperm(len(anchors), generator=generator)]
    if world_size > 1:
        anchors = anchors[: len(anchors) - len(anchors) % world_size][rank::world_size]
    for number, start in enumerate(range(0, len(anchors), batch_size)):
        if limit is not None and number >= limit:
            return
        yield anchors[start : start + batch_size]


TASKS: Registry[type[Task]] = Registry("task", packages=("stgraph.tasks",))
