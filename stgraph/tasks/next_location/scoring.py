"""What the next-location task keeps of a model's answer (`NextLocationPrediction`: ranks and a
short top list, never the ``[S, L]`` scores of a whole split) and the split's metrics
(`NextLocationMetrics`): Acc@k, NDCG@k and MRR over every sample, over the recurring and the
explorative subsets (HGARN's settings 1 and 2, exact here) and for the category."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stgraph.metrics.ranking import RankingMetrics, rank_counts
from stgraph.tasks.base import Tensors
from stgraph.tasks.next_location.batch import (
    NextLocationBatch,
    NextLocationOutput,
    NextLocationTargets,
)

CATEGORY_KS = (1, 5)


@dataclass(frozen=True)
class NextLocationPrediction(Tensors):
    """Per sample (``[S]``): where the true location ranks (``higher``/``tied``: locations scored
    above / exactly like it; 0 where it cannot be ranked, see ``targets.location``), the same
    for the category (None without a category head or categories), the ``top_k`` locations and
    their scores, and the sample's ``user`` and ``position`` (its last input check-in in the
    user's events: the target is event ``user_start + position + 1``)."""

    higher: torch.Tensor
    tied: torch.Tensor
    top_location: torch.Tensor
    top_score: torch.Tensor
    user: torch.Tensor
    position: torch.Tensor
    category_higher: torch.Tensor | None = None
    category_tied: torch.Tensor | None = None

    def rank(self, missed: torch.Tensor) -> torch.Tensor:
        """The pessimistic rank (1 = top), ``inf`` where ``missed``."""
        rank = (1 + self.higher + self.tied).to(torch.float64)
        return rank.masked_fill(missed.to(rank.device), math.inf)


def make_prediction(
    output: NextLocationOutput,
    batch: NextLocationBatch,
    top_k: int,
    unseen: torch.Tensor | None = None,
):
    """The `NextLocationPrediction` of ``output`` (computed where the output is). Locations
    flagged ``unseen`` (``[L]``: never in training, the unknown entry among them) are ranked
    last: no model may win by naming a place it cannot know."""
    inputs, targets = batch.inputs, batch.targets
    scores = output.location.float()  # a half-precision output (AMP) ranks in float32
    if unseen is not None:
        scores = scores.masked_fill(unseen.to(scores.device), -math.inf)
    higher, tied = rank_counts(scores, targets.location.clamp_min(0))
    missed = targets.location < 0
    higher, tied = higher.masked_fill(missed, 0), tied.masked_fill(missed, 0)
    listed = scores.shape[1] if unseen is None else int((~unseen).sum())
    top_score, top_location = scores.topk(min(top_k, listed), dim=1)
    category_higher = category_tied = None
    if output.category is not None and bool((targets.category >= 0).all()):
        category_higher, category_tied = rank_counts(output.category.float(), targets.category)
    return NextLocationPrediction(
        higher=higher,
        tied=tied,
        top_location=top_location,
        top_score=top_score,
        user=inputs.user[inputs.query_row],
        position=inputs.query_pos,
        category_higher=category_higher,
        category_tied=category_tied,
    )


class NextLocationMetrics:
    """Ranking metrics of a split: ``acc@k``, ``ndcg@k``, ``mrr`` over every sample (a target
    location never seen in training counts as a miss), the same under ``recurring/`` and
    ``explorative/``, and ``category/acc@1``, ``category/acc@5``, ``category/mrr`` (NaN for a
    model without a category head)."""

    def __init__(self, ks: tuple[int, ...], num_locations: int, num_categories: int) -> None:
        self.num_locations = num_locations
        self.num_categories = num_categories
        self.parts = {
            "": RankingMetrics(ks),
            "recurring/": RankingMetrics(ks),
            "explorative/": RankingMetrics(ks),
            "category/": RankingMetrics(CATEGORY_KS),
        }

    def update(self, prediction: NextLocationPrediction, targets: NextLocationTargets) -> None:
        missed = targets.location < 0
        for prefix, mask in (
            ("", None),
            ("recurring/", targets.recurring),
            ("explorative/", targets.explorative),
        ):
            self.parts[prefix].update_ranks(
                prediction.higher, prediction.tied, self.num_locations, mask, missed
            )
        if prediction.category_higher is not None and self.num_categories > 0:
            self.parts["category/"].update_ranks(
                prediction.category_higher, prediction.category_tied, self.num_categories
            )

    def state(self) -> torch.Tensor:
        return torch.cat([part.state() for part in self.parts.values()])

    def load_state(self, state: torch.Tensor) -> None:
        sizes = [len(part.state()) for part in self.parts.values()]
        for part, chunk in zip(self.parts.values(), state.split(sizes)):
            part.load_state(chunk)

    def compute(self) -> dict[str, float]:
        results: dict[str, float] = {}
        for prefix, part in self.parts.items():
            values = part.compute()
            if prefix == "category/":
                values = {k: v for k, v in values.items() if not k.startswith("ndcg")}
            results.update({prefix + name: value for name, value in values.items()})
        return results
