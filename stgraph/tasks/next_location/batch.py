"""What a next-location model reads (`NextLocationInputs`), what it is scored on
(`NextLocationTargets`), what it answers (`NextLocationOutput`) and the facts of the data it is
built for (`MobilityContext`).

A batch is packed by user: each of its ``R`` rows is one user's check-in sequence, read once,
and each of its ``S`` samples asks for the next location after one position of one row (the
state after a session's second-to-last check-in predicts its last). Samples of one user share
the row, so a recurrent model encodes the user's history once for all of them: exact, and far
cheaper than one sequence per sample.

A row ends at its last sample's query position, so no sample's own target is in the inputs;
earlier samples' targets are there, as the history of later ones. A model must therefore be
causal along a row: a sample's scores may depend on positions ``<= query_pos`` only (the tests
check every model for it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from stgraph.graphs.graph import Graph
from stgraph.tasks.base import Batch, ModelContext, Tensors


@dataclass(frozen=True)
class NextLocationInputs(Tensors):
    """``R`` user rows of up to ``T`` check-ins and ``S`` samples that query them.

    Attributes:
        location, category: ``[R, T]`` int64 ids (0 where padded; category 0 without categories).
        hour: ``[R, T]`` int64 local hour of day in 0..23 (the faithful variant may pass UTC).
        weekday: ``[R, T]`` int64 day of week, 0 = Monday.
        gap_hours: ``[R, T]`` float32 hours since the user's previous check-in (0 for the first).
        user: ``[R]`` int64 user ids.
        lengths: ``[R]`` int64 valid check-ins per row (rows are padded after them).
        query_row: ``[S]`` int64 row of each sample.
        query_pos: ``[S]`` int64 position in its row of the sample's last input check-in.
    """

    location: torch.Tensor
    category: torch.Tensor
    hour: torch.Tensor
    weekday: torch.Tensor
    gap_hours: torch.Tensor
    user: torch.Tensor
    lengths: torch.Tensor
    query_row: torch.Tensor
    query_pos: torch.Tensor

    def __len__(self) -> int:
        return self.query_row.shape[0]

    def rows(self, rows: torch.Tensor, samples: torch.Tensor) -> NextLocationInputs:
        """The sub-batch of ``rows`` (sorted) and ``samples`` (all of whose rows are in it),
        trimmed to its longest row."""
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 0
        device = self.user.device
        renumber = torch.full((self.user.shape[0],), -1, dtype=torch.long, device=device)
        renumber[rows] = torch.arange(len(rows), device=device)
        per_step = {
            name: getattr(self, name)[rows, :width]
            for name in ("location", "category", "hour", "weekday", "gap_hours")
        }
        return dataclasses.replace(
            self,
            **per_step,
            user=self.user[rows],
            lengths=lengths,
            query_row=renumber[self.query_row[samples]],
            query_pos=self.query_pos[samples],
        )


@dataclass(frozen=True)
class NextLocationTargets(Tensors):
    """Per sample (``[S]``): the true next ``location`` (-1 when it was never seen in training:
    it counts as a miss), its ``category`` (-1 without categories), and whether the sample is
    ``recurring`` (target location and category both in the user's input history) or
    ``explorative`` (neither is), the two subsets of the HGARN protocol."""

    location: torch.Tensor
    category: torch.Tensor
    recurring: torch.Tensor
    explorative: torch.Tensor


@dataclass(frozen=True)
class NextLocationBatch(Batch[NextLocationInputs, NextLocationTargets]):
    """A packed batch; `split` cuts it between users, never through a user's row."""

    def to(self, device: torch.device | str) -> NextLocationBatch:
        return NextLocationBatch(self.inputs.to(device), self.targets.to(device))

    def split(self, size: int) -> list[NextLocationBatch]:
        """Consecutive groups of whole rows with at most ``size`` samples each (a row with more
        samples than ``size`` forms a group of its own)."""
        inputs = self.inputs
        per_row = torch.bincount(inputs.query_row, minlength=inputs.user.shape[0]).tolist()
        groups: list[list[int]] = [[]]
        count = 0
        for row, n in enumerate(per_row):
            if groups[-1] and count + n > size:
                groups.append([])
                count = 0
            groups[-1].append(row)
            count += n
        parts = []
        for group in groups:
            rows = torch.tensor(group, dtype=torch.long, device=inputs.query_row.device)
            samples = torch.nonzero(torch.isin(inputs.query_row, rows)).flatten()
            targets = NextLocationTargets(
                **{f.name: getattr(self.targets, f.name)[samples]
                   for f in dataclasses.fields(self.targets)}
            )  # fmt: skip
            parts.append(NextLocationBatch(inputs.rows(rows, samples), targets))
        return parts


@dataclass(frozen=True)
class NextLocationOutput:
    """A model's answer for ``S`` samples: ``location`` scores ``[S, L]`` (logits: higher is
    likelier) and ``category`` scores ``[S, C]`` (None for a model without a category head)."""

    location: torch.Tensor
    category: torch.Tensor | None = None


@dataclass(frozen=True)
class MobilityContext(ModelContext):
    """Facts about the check-ins a next-location model is built for.

    Attributes:
        num_users, num_locations, num_categories: vocabulary sizes (``num_categories`` is 0
            without categories).
        location_graphs: named graphs built from training check-ins only: ``"location"``
            (locations within a radius), ``"location_category"`` (bipartite membership over
            ``L + C`` nodes: category ``c`` is node ``L + c``; edges location -> category) and
            ``"category"`` (co-occurrence); absent where the data lacks coordinates or
            categories.
        coords: ``[L, 2]`` latitude and longitude, or None.
        location_category: ``[L]`` each location's category (the most frequent in training),
            -1 where unknown, or None without categories.
    """

    num_users: int
    num_locations: int
    num_categories: int
    location_graphs: dict[str, Graph] = dataclasses.field(default_factory=dict)
    coords: torch.Tensor | None = None
    location_category: torch.Tensor | None = None

    @property
    def graphs(self) -> dict[str, Graph]:
        return dict(self.location_graphs)
