"""Honest next-location baselines: the user's most frequent location, a first-order Markov
chain, and a GRU over the same check-in features as HGARN without its graphs.

The two count baselines have nothing to learn by gradient (``trainable = False``): their
statistics come from `fit_train` on the training check-ins (`CheckinTrainView`), their
per-sample counts from the sample's own row up to its query position (causal). Their scores are
not logits: only their order matters (ranking metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from stgraph.config import option
from stgraph.data.checkins.sessions import CheckinTrainView
from stgraph.models.base import MODELS, ModelConfig, NextLocationModel
from stgraph.nn.sequence import at_queries, encode_rows
from stgraph.tasks.next_location.batch import (
    MobilityContext,
    NextLocationInputs,
    NextLocationOutput,
)

TIE_BREAK = 1e-3  # weight of the global popularity under the user's counts: below one visit


def row_counts(ids: torch.Tensor, inputs: NextLocationInputs, size: int) -> torch.Tensor:
    """``[S, size]``: how often each id occurs in each sample's row up to its query position
    (``ids`` is ``inputs.location`` or ``inputs.category``)."""
    steps = ids[inputs.query_row]  # [S, T]
    seen = torch.arange(ids.shape[1], device=ids.device) <= inputs.query_pos[:, None]
    counts = torch.zeros(steps.shape[0], size, device=ids.device)
    return counts.scatter_add_(1, steps, seen.float())


def popularity(ids: np.ndarray, size: int) -> torch.Tensor:
    """``[size]`` training counts scaled into ``[0, TIE_BREAK]``."""
    counts = np.bincount(ids, minlength=size).astype(np.float32)
    return torch.from_numpy(counts / max(counts.max(initial=0.0), 1.0) * TIE_BREAK)


@dataclass
class CountBaselineConfig(ModelConfig):
    pass


@MODELS.register("most-frequent")
class MostFrequent(NextLocationModel):
    """Scores each location by the user's visits to it in the sample's row up to the query
    position (the input history), plus the location's training popularity scaled below one
    visit, which breaks ties (and ranks locations the user never visited). Categories alike."""

    config_class = CountBaselineConfig
    trainable = False

    def __init__(self, config: ModelConfig, context: MobilityContext) -> None:
        super().__init__(config, context)
        self.register_buffer("location_popularity", torch.zeros(context.num_locations))
        self.register_buffer("category_popularity", torch.zeros(context.num_categories))

    def fit_train(self, train: CheckinTrainView) -> None:
        log = train.log
        self.location_popularity.copy_(popularity(log.location, self.context.num_locations))
        if log.category is not None and self.context.num_categories:
            self.category_popularity.copy_(popularity(log.category, self.context.num_categories))

    def forward(self, inputs: NextLocationInputs) -> NextLocationOutput:
        context = self.context
        location = row_counts(inputs.location, inputs, context.num_locations)
        location = location + self.location_popularity
        category = None
        if context.num_categories:
            category = row_counts(inputs.category, inputs, context.num_categories)
            category = category + self.category_popularity
        return NextLocationOutput(location, category)


class TransitionTable(nn.Module):
    """Row-normalised transition counts ``P[a, b]`` over ``size`` states in CSR form (three
    buffers whose lengths are set by `fit` and by a loaded state dict)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("indptr", torch.zeros(size + 1, dtype=torch.long))
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("values", torch.zeros(0))

    def fit(self, src: np.ndarray, dst: np.ndarray) -> None:
        counts = sp.csr_matrix(
            (np.ones(len(src)), (src, dst)), shape=(self.size, self.size), dtype=np.float64
        )
        counts.sum_duplicates()
        totals = np.asarray(counts.sum(axis=1)).ravel()
        probs = counts.data / np.repeat(totals, np.diff(counts.indptr))
        device = self.indptr.device
        self.indptr = torch.as_tensor(counts.indptr, dtype=torch.long, device=device)
        self.indices = torch.as_tensor(counts.indices, dtype=torch.long, device=device)
        self.values = torch.as_tensor(probs, dtype=torch.float32, device=device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("indices", "values"):  # sized by the data: take the saved length
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def rows(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P[states] as [S, size], whether each state has any outgoing transition [S])``."""
        start = self.indptr[states]
        count = self.indptr[states + 1] - start
        sample = torch.repeat_interleave(torch.arange(len(states), device=states.device), count)
        offset = torch.arange(len(sample), device=states.device) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        entry = start[sample] + offset
        dense = torch.zeros(len(states), self.size, device=self.values.device)
        dense[sample, self.indices[entry]] = self.values[entry]
        return dense, count > 0


@MODELS.register("markov")
class Markov(NextLocationModel):
    """First-order Markov chain: ``P(next | last)`` from the training check-ins, user-agnostic.

    Transitions are consecutive check-ins of one user in the training view, across session
    boundaries (the rows a model reads join a user's sessions the same way); a repeat of the
    same location counts. The score is ``P(b | last) + 1e-6 f_b`` with ``f`` the `MostFrequent`
    score rescaled into ``[0, 1)`` (it orders the locations the chain never reaches); where the
    last location has no outgoing transition in training the score is the `MostFrequent` score.
    (Two probabilities of one row differ by at least one over its count, so the tie-breaker never
    reorders them below a million transitions out of one location.) Categories alike, from the
    category of each check-in.
    """

    config_class = CountBaselineConfig
    trainable = False

    def __init__(self, config: ModelConfig, context: MobilityContext) -> None:
        super().__init__(config, context)
        self.fallback = MostFrequent(config, context)
        self.location_chain = TransitionTable(context.num_locations)
        self.category_chain = TransitionTable(context.num_categories)

    def fit_train(self, train: CheckinTrainView) -> None:
        log = train.log
        self.fallback.fit_train(train)
        same_user = log.user[1:] == log.user[:-1]
        loc = log.location
        self.location_chain.fit(loc[:-1][same_user], loc[1:][same_user])
        if log.category is not None and self.context.num_categories:
            cat = log.category
            self.category_chain.fit(cat[:-1][same_user], cat[1:][same_user])

    @staticmethod
    def _blend(chain: TransitionTable, last: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        probs, known = chain.rows(last)
        scale = fallback.amax(dim=1, keepdim=True).clamp_min(1e-12) * (1 + 1e-6)
        return torch.where(known[:, None], probs + 1e-6 * fallback / scale, fallback)

    def forward(self, inputs: NextLocationInputs) -> NextLocationOutput:
        fallback = self.fallback(inputs)
        row, pos = inputs.query_row, inputs.query_pos
        location = self._blend(self.location_chain, inputs.location[row, pos], fallback.location)
        category = None
        if fallback.category is not None:
            last = inputs.category[row, pos]
            category = self._blend(self.category_chain, last, fallback.category)
        return NextLocationOutput(location, category)


@dataclass
class GRUConfig(ModelConfig):
    location_dim: int = option(128, "location embedding width")
    category_dim: int = option(32, "category embedding width (unused without categories)")
    user_dim: int = option(32, "user embedding width")
    hour_dim: int = option(16, "2-hour slot embedding width")
    weekday_dim: int = option(8, "weekday embedding width")
    hidden: int = option(256, "GRU hidden width")
    dropout: float = option(0.1, "dropout on the step features and the GRU state")


@MODELS.register("gru")
class GRUBaseline(NextLocationModel):
    """A GRU over HGARN's check-in features without the graphs: embeddings of the location,
    category, 2-hour slot, weekday and user; one linear head over locations and one over
    categories (none without categories). The neural control for graph models."""

    config_class = GRUConfig

    def __init__(self, config: GRUConfig, context: MobilityContext) -> None:
        super().__init__(config, context)
        c = config
        if context.num_locations < 1 or context.num_users < 1:
            raise ValueError("gru needs at least one location and one user")
        self.location = nn.Embedding(context.num_locations, c.location_dim)
        self.user = nn.Embedding(context.num_users, c.user_dim)
        self.hour = nn.Embedding(12, c.hour_dim)
        self.weekday = nn.Embedding(7, c.weekday_dim)
        width = c.location_dim + c.user_dim + c.hour_dim + c.weekday_dim
        self.category = None
        self.category_head = None
        if context.num_categories:
            self.category = nn.Embedding(context.num_categories, c.category_dim)
            self.category_head = nn.Linear(c.hidden, context.num_categories)
            width += c.category_dim
        self.rnn = nn.GRU(width, c.hidden, batch_first=True)
        self.location_head = nn.Linear(c.hidden, context.num_locations)

    def forward(self, inputs: NextLocationInputs) -> NextLocationOutput:
        steps = inputs.location.shape[1]
        parts = [
            self.location(inputs.location),
            self.user(inputs.user)[:, None].expand(-1, steps, -1),
            self.hour((inputs.hour // 2).clamp(0, 11)),
            self.weekday(inputs.weekday),
        ]
        if self.category is not None:
            parts.append(self.category(inputs.category))
        dropout = self.config.dropout
        x = F.dropout(torch.cat(parts, dim=-1), dropout, self.training)
        states = encode_rows(self.rnn, x, inputs.lengths)
        h = F.dropout(
            at_queries(states, inputs.query_row, inputs.query_pos), dropout, self.training
        )
        category = self.category_head(h) if self.category_head is not None else None
        return NextLocationOutput(self.location_head(h), category)
