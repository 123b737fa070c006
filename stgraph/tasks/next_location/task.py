"""The next-location task: a user's check-ins so far -> the location of their next one.

One sample per session of a split (`Sessions.samples`): the user's check-ins before the
session's last one (all earlier sessions included, training ones too for validation and test)
predict the last one's location and category. Batches pack whole users into rows
(`NextLocationBatch`); the loss is HGARN's MAHEC soft-label cross-entropy (Tang, He, Zhao,
T-ITS 2024) on locations and categories; the metrics rank the true location among all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from stgraph.data.checkins.sessions import CheckinTrainView, Sessions
from stgraph.data.config import DataConfig
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.tasks.base import TASKS, Goal, Loss, Report, Task
from stgraph.tasks.next_location.batch import (
    MobilityContext,
    NextLocationBatch,
    NextLocationOutput,
)
from stgraph.tasks.next_location.config import NextLocationConfig
from stgraph.tasks.next_location.loss import history_counts, longest_samples, mahec_sum
from stgraph.tasks.next_location.predictor import NextLocationPredictor
from stgraph.tasks.next_location.samples import (
    SampleIndex,
    num_bootstrap,
    num_packed,
    time_features,
)
from stgraph.tasks.next_location.scoring import (
    NextLocationMetrics,
    NextLocationPrediction,
    make_prediction,
)


def build_graphs(view: CheckinTrainView, config: NextLocationConfig) -> dict[str, Graph]:
    """The graphs of `MobilityContext` from the training check-ins only: ``location`` (within
    ``radius_km``; needs coordinates in degrees), ``location_category`` and ``category``
    (co-occurrence in ``slot_hours`` slots; both need categories)."""
    return mobility_graphs(view, config)[0]


def mobility_graphs(
    view: CheckinTrainView, config: NextLocationConfig
) -> tuple[dict[str, Graph], torch.Tensor | None]:
    """`build_graphs` and each location's category as the membership builder assigns it
    (None without categories)."""
    from stgraph.graphs.mobility import cooccurrence_graph, membership_graph, radius_graph

    log = view.log
    graphs: dict[str, Graph] = {}
    location_category = None
    # A radius in km means nothing on coordinates rescaled to [-1, 1] (LLM-Mob's release).
    if log.coords is not None and log.attrs.get("coords", "degrees") == "degrees":
        graphs["location"] = radius_graph(log.coords, config.radius_km)
    if log.category is not None and log.num_categories > 0:
        graphs["location_category"], location_category = membership_graph(
            log.location, log.category, log.num_locations, log.num_categories
        )
        location_category = torch.as_tensor(location_category, dtype=torch.long)
        hour = time_features(log.time, log.user)[0]
        graphs["category"] = cooccurrence_graph(
            log.user, log.category, hour, log.num_categories, config.slot_hours
        )
    return graphs, location_category


def location_categories(graphs: dict[str, Graph], num_locations: int) -> torch.Tensor | None:
    """``[L]`` each location's category read off a given membership graph (edges location ->
    ``L + category``; the last where a location has several), -1 where a location has none;
    None without the graph."""
    graph = graphs.get("location_category")
    if graph is None:
        return None
    result = torch.full((num_locations,), -1, dtype=torch.long)
    source, target = graph.edge_index
    forward = (source < num_locations) & (target >= num_locations)
    result[source[forward]] = target[forward] - num_locations
    return result


@TASKS.register("next-location")
class NextLocationTask(Task):
    """Next-location prediction over check-in sessions.

    Args:
        sessions: the check-ins cut into sessions and assigned to splits.
        config: the task's settings.
        graphs: the context's graphs (default: `build_graphs` on the training view).
    """

    name = "next-location"
    config_class = NextLocationConfig
    predictor_class = NextLocationPredictor
    default_model = "hgarn"
    sample_noun = "sessions"

    def __init__(
        self,
        sessions: Sessions,
        config: NextLocationConfig | None = None,
        graphs: dict[str, Graph] | None = None,
    ) -> None:
        self.config = config = config or NextLocationConfig()
        self.sessions = sessions
        log = sessions.log
        self.log = log
        self.dataset_name = log.name
        self.monitor = config.monitor
        self.train_view = sessions.train_view()
        seen = np.zeros(log.num_locations, dtype=bool)
        seen[self.train_view.log.location] = True
        self.index = SampleIndex(sessions, seen)
        self.unseen = torch.from_numpy(~seen)
        if graphs is None:
            graphs, location_category = mobility_graphs(self.train_view, config)
        else:
            graphs = dict(graphs)
            location_category = location_categories(graphs, log.num_locations)
        self.num_categories = log.num_categories if log.category is not None else 0
        self.context = MobilityContext(
            num_users=log.num_users,
            num_locations=log.num_locations,
            num_categories=self.num_categories,
            location_graphs=graphs,
            coords=None if log.coords is None else torch.from_numpy(log.coords).float(),
            location_category=location_category,
        )

    @classmethod
    def build(cls, data: DataConfig, config: NextLocationConfig) -> NextLocationTask:
        """Read the check-ins, filter them and cut them into sessions (``config.checkins``)."""
        from stgraph.data.checkins import make_sessions, open_checkins

        for key, where in (("split", "task.params.checkins"), ("graph", "task.params")):
            if getattr(data, key):  # the forecast task's sections: silently ignored otherwise
                raise InputError(
                    f"data.{key} does not apply to the next-location task; its settings are "
                    f"under {where}."
                )
        checkins = config.checkin_config()  # unknown keys fail before any data is read
        log = open_checkins(data.dataset, data.data_dir, data.download)
        return cls(make_sessions(log, checkins), config)

    # ------------------------------------------------------------------ batches
    def num_samples(self, split: str) -> int:
        return len(self.index.splits[split])

    def _bootstrap(self, split: str, shuffle: bool) -> bool:
        return self.config.batching == "bootstrap" and split == "train" and shuffle

    def num_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        """Batches per rank, as `batches` yields them (shuffled ones for ``train``)."""
        samples = self.index.splits[split]
        if self._bootstrap(split, shuffle=True):
            return num_bootstrap(len(samples), batch_size, world_size) // world_size
        return num_packed(len(samples), len(samples.users), batch_size, world_size) // world_size

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
    ) -> Iterator[NextLocationBatch]:
        """Packed batches: whole users, about ``batch_size`` samples each (a user with more
        forms a larger batch), every sample once per epoch on exactly one rank; every rank gets
        the same number of batches (a split with fewer users than ranks gives none). With
        ``batching: bootstrap`` shuffled training batches are HGARN's independent draws."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if self._bootstrap(split, shuffle):
            groups = self.index.bootstrap_groups(split, batch_size, seed, epoch, rank, world_size)
        else:
            groups = self.index.packed_groups(
                split, batch_size, shuffle, seed, epoch, rank, world_size
            )
        for number, samples in enumerate(groups):
            if limit is not None and number >= limit:
                return
            yield self.index.batch(split, samples)

    # ------------------------------------------------------------------ loss and scoring
    def goal(self, metric: str) -> Goal:
        return "max"  # accuracies, NDCG and MRR

    def loss(self, output: NextLocationOutput, batch: NextLocationBatch) -> Loss:
        """MAHEC sums for locations and categories (`mahec_sum`), weighted by `loss_weight`.

        A sample whose target location never occurs in training (only in validation or test,
        where no loss is taken) is left out of both terms and of the weight.
        """
        config, inputs, targets = self.config, batch.inputs, batch.targets
        include = targets.location >= 0
        drop = longest_samples(inputs) if config.faithful_history_off_by_one else None
        counts = history_counts(inputs.location, inputs, output.location.shape[1], drop)
        terms = {
            "location": mahec_sum(
                output.location,
                targets.location,
                counts,
                config.target_weight,
                include,
                config.faithful_loss_divisor,
            )
        }
        if output.category is not None and self.num_categories > 0 and config.category > 0:
            counts = history_counts(inputs.category, inputs, output.category.shape[1], drop)
            terms["category"] = mahec_sum(
                output.category,
                targets.category,
                counts,
                config.target_weight,
                include & (targets.category >= 0),
                config.faithful_loss_divisor,
            )
        weights = {"location": config.location, "category": config.category}
        return Loss.weighted(terms, weights, self.loss_weight(batch, output))

    def loss_weight(self, batch: NextLocationBatch, output: Any) -> torch.Tensor:
        """The samples whose target can be ranked (HGARN's divisor, with
        ``faithful_loss_divisor``, counts every sample)."""
        if self.config.faithful_loss_divisor:
            return torch.tensor(float(len(batch)), device=batch.targets.location.device)
        return (batch.targets.location >= 0).sum().to(torch.float32)

    def predict(
        self, output: NextLocationOutput, batch: NextLocationBatch, split: str | None = None
    ) -> NextLocationPrediction:
        """Ranks of the true location and category, and the top locations (`make_prediction`)."""
        return make_prediction(output, batch, self.config.top_k, self.unseen)

    def new_metrics(self) -> NextLocationMetrics:
        return NextLocationMetrics(
            tuple(self.config.ks), self.context.num_locations, self.num_categories
        )

    def update_metrics(
        self,
        metrics: NextLocationMetrics,
        prediction: NextLocationPrediction,
        batch: NextLocationBatch,
    ) -> None:
        metrics.update(prediction, batch.targets)

    def report(
        self,
        split: str,
        metrics: NextLocationMetrics,
        predictions: list[NextLocationPrediction],
        model_name: str,
    ) -> Report:
        from stgraph.tasks.next_location.report import next_location_report

        return next_location_report(self, split, predictions, model_name)

    # ------------------------------------------------------------------ serving
    def export(self) -> dict[str, Any]:
        log = self.log
        location_category = self.context.location_category
        return {
            "users": [str(u) for u in log.users],
            "locations": [str(x) for x in log.locations],
            "categories": [str(c) for c in log.categories],
            "unseen": self.unseen.nonzero().flatten().tolist(),
            "location_category": None if location_category is None else location_category.tolist(),
            "top_k": self.config.top_k,
            "clock": self.config.clock,
            "dataset": log.name,
        }
