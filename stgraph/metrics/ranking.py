"""Ranking metrics for next-location prediction, accumulated over a whole split.

Each sample has a score for each of ``L`` candidate locations and one true next location. Its
rank is ``1 + g`` with ``g`` the number of other locations scored strictly higher; ``t`` other
locations scored exactly equal to the target make the rank ambiguous, and ``ties`` decides:

- ``"pessimistic"`` (default): the target goes after every tied location, rank ``1 + g + t``.
  A lower bound; a model that scores everything alike (or scores the target ``-inf`` along with
  others) gets no credit for it, and ``torch.topk``'s arbitrary tie order cannot flatter it.
- ``"expected"``: the expected metric when ties are broken uniformly at random: the target takes
  each rank ``g+1 .. g+t+1`` with probability ``1/(t+1)`` and the metric is averaged over them
  (so an all-equal score vector gets ``acc@k = k/L``, what guessing gets).

Without ties both give the usual metrics. Per sample, with rank ``r`` (a single relevant item):
``acc@k = [r <= k]``, ``ndcg@k = [r <= k] / log2(1 + r)`` (the ideal DCG is 1) and
``rr = 1 / r``; ``acc@k``, ``ndcg@k`` and ``mrr`` are their means over the observed samples of
the split, as fractions in [0, 1]. Scores compare exactly (no tolerance); a NaN score counts as
``-inf``, the worst.

A caller that cannot keep a split's ``[B, L]`` scores may keep `rank_counts` per sample and add
them with `RankingMetrics.update_ranks`, which also takes samples whose target is not among the
candidates (``missed``: counted, every metric 0).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

TIES = ("pessimistic", "expected")


class RankingMetrics:
    """Acc@k, NDCG@k for each ``k`` in ``ks``, and MRR, as sums and a count over a split."""

    def __init__(
        self,
        ks: tuple[int, ...] = (1, 5, 10, 20),
        ties: Literal["pessimistic", "expected"] = "pessimistic",
    ) -> None:
        if not ks or any(int(k) != k or k < 1 for k in ks) or len(set(ks)) != len(ks):
            raise ValueError(f"ks must be distinct positive integers, got {ks}.")
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got '{ties}'.")
        self.ks = tuple(int(k) for k in ks)
        self.ties = ties
        # acc@k sums (len(ks)), ndcg@k sums (len(ks)), reciprocal-rank sum, sample count
        self._sums = torch.zeros(2 * len(self.ks) + 2, dtype=torch.float64)

    @torch.no_grad()
    def update(
        self, scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add a batch: ``scores [B, L]`` (higher = more likely), ``target [B]`` the index of the
        true location, ``mask [B]`` True for the samples to score (default: all)."""
        if (
            scores.dim() != 2
            or target.shape != scores.shape[:1]
            or (mask is not None and mask.shape != target.shape)
        ):
            raise ValueError(
                f"scores must be [B, L], target and mask [B], got {tuple(scores.shape)}, "
                f"{tuple(target.shape)} and {None if mask is None else tuple(mask.shape)}."
            )
        keep = torch.ones_like(target, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        scores, target = scores[keep], target[keep].long()
        n_locations = scores.shape[1]
        if bool(((target < 0) | (target >= n_locations)).any()):
            raise ValueError(f"target indices must lie in [0, {n_locations}).")
        higher, tied = rank_counts(scores, target)
        self.update_ranks(higher, tied, n_locations)

    @torch.no_grad()
    def update_ranks(
        self,
        higher: torch.Tensor,
        tied: torch.Tensor,
        num_candidates: int,
        mask: torch.Tensor | None = None,
        missed: torch.Tensor | None = None,
    ) -> None:
        """Add a batch from `rank_counts` (so that a caller may keep ``[B]`` counts instead of
        ``[B, L]`` scores): ``higher`` and ``tied`` ``[B]`` out of ``num_candidates``;
        ``mask [B]`` True for the samples to score (default: all); ``missed [B]`` True for
        samples whose target cannot be ranked (it is not among the candidates): counted, with
        every metric 0."""
        keep = torch.ones_like(higher, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        higher, tied = higher[keep].long(), tied[keep].long()
        if higher.numel() == 0:
            return
        missed = torch.zeros_like(higher, dtype=torch.bool) if missed is None else missed[keep]
        higher = higher.masked_fill(missed, 0)
        tied = tied.masked_fill(missed, 0)
        hit = (~missed).to(torch.float64)
        if self.ties == "pessimistic":
            higher, tied = higher + tied, torch.zeros_like(tied)
        # With ties the target takes each rank higher+1 .. higher+tied+1 with probability
        # 1/(tied+1), so a metric is a mean of per-rank gains over that range: prefix sums of the
        # gains make it O(1) per sample. Without ties (always, when pessimistic) the gain at the
        # one rank is computed directly, which is exact.
        device = higher.device
        rank = (higher + 1).to(torch.float64)
        single = tied == 0
        ranks = torch.arange(1, num_candidates + 1, dtype=torch.float64, device=device)
        zero = torch.zeros(1, dtype=torch.float64, device=device)
        cum_dcg = torch.cat([zero, (1 / torch.log2(1 + ranks)).cumsum(0)])
        cum_rr = torch.cat([zero, (1 / ranks).cumsum(0)])
        first, last, width = higher, higher + tied + 1, (tied + 1).to(torch.float64)

        def mean_gain(cumulative: torch.Tensor, top: torch.Tensor, exact: torch.Tensor):
            spread = (cumulative[top] - cumulative[first]) / width
            return (torch.where(single, exact, spread) * hit).sum()

        acc, ndcg = [], []
        for k in self.ks:
            top = last.clamp(max=k).clamp(min=first)  # ranks first+1 .. top are within k
            within = (rank <= k).to(torch.float64)
            acc.append(((top - first) / width * hit).sum())  # a count over a count: exact
            ndcg.append(mean_gain(cum_dcg, top, within / torch.log2(1 + rank)))
        rr = mean_gain(cum_rr, last, 1 / rank)
        count = torch.tensor(float(higher.numel()), dtype=torch.float64, device=device)
        self._sums += torch.stack([*acc, *ndcg, rr, count]).cpu()

    def state(self) -> torch.Tensor:
        """The accumulated sums as one tensor, for an all-reduce across processes."""
        return self._sums.clone()

    def load_state(self, state: torch.Tensor) -> None:
        self._sums = state.detach().to("cpu", torch.float64).reshape(self._sums.shape).clone()

    def compute(self) -> dict[str, float]:
        """``acc@k``, ``ndcg@k`` for each k, and ``mrr``; NaN when no sample was observed."""
        n = float(self._sums[-1])
        means = [float(s) / n if n else math.nan for s in self._sums[:-1]]
        results = {f"acc@{k}": means[i] for i, k in enumerate(self.ks)}
        results.update({f"ndcg@{k}": means[len(self.ks) + i] for i, k in enumerate(self.ks)})
        results["mrr"] = means[-1]
        return results


@torch.no_grad()
def rank_counts(scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``higher [B]``: candidates scored strictly above the target; ``tied [B]``: other
    candidates scored exactly like it (``scores [B, L]``, ``target [B]`` in ``[0, L)``). A NaN
    score counts as ``-inf``."""
    if scores.is_floating_point():  # compared in their own dtype: ties are exact there
        scores = scores.nan_to_num(nan=-math.inf)
    target_score = scores.gather(1, target.long()[:, None])
    higher = (scores > target_score).sum(1)
    tied = (scores == target_score).sum(1) - 1  # other candidates, not the target itself
    return higher, tied
