"""The MAHEC soft-label cross-entropy of HGARN (Tang, He, Zhao, T-ITS 2024, arXiv 2210.07765;
spec section 4), as a sum over the samples of a packed batch.

Each sample's target distribution mixes the one-hot truth with the user's own visit history:
``q = w * onehot(y) + (1 - w) * sum_k p_k onehot(k)`` over the distinct items ``k`` of the input
history other than the target, ``p_k`` their normalised visit counts; ``w = 1`` is plain
cross-entropy. A sample whose history holds nothing but the target gets ``q = onehot(y)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stgraph.tasks.next_location.batch import NextLocationInputs


def history_counts(
    items: torch.Tensor, inputs: NextLocationInputs, size: int, drop_smallest: torch.Tensor | None
) -> torch.Tensor:
    """``[S, size]`` visit counts of each sample's input history (its row up to ``query_pos``).

    Args:
        items: ``[R, T]`` ids per step (``inputs.location`` or ``inputs.category``).
        drop_smallest: ``[S]`` True where the smallest id of the history is removed (HGARN's
            off-by-one: its code drops the first distinct id as padding even in the longest,
            unpadded sequence of a batch); None for none.
    """
    per_sample = items[inputs.query_row]  # [S, T]
    steps = torch.arange(items.shape[1], device=items.device)
    inside = (steps[None, :] <= inputs.query_pos[:, None]).to(torch.float32)
    counts = torch.zeros(per_sample.shape[0], size, device=items.device)
    counts.scatter_add_(1, per_sample, inside)
    if drop_smallest is not None:
        smallest = (counts > 0).to(torch.int8).argmax(1)  # the first id with a visit
        rows = torch.nonzero(drop_smallest).flatten()
        counts[rows, smallest[rows]] = 0
    return counts


def longest_samples(inputs: NextLocationInputs) -> torch.Tensor:
    """``[S]`` True for the samples with the longest input history in the batch (in the batch
    the loss sees: with micro-batches, in each micro-batch)."""
    return inputs.query_pos == inputs.query_pos.max()


def mahec_sum(
    logits: torch.Tensor,
    target: torch.Tensor,
    counts: torch.Tensor,
    target_weight: float,
    include: torch.Tensor,
    skip_empty: bool = False,
) -> torch.Tensor:
    """Sum over the ``include``d samples of ``-sum_l q_l log softmax(logits)_l``.

    Args:
        logits: ``[S, V]`` scores; target: ``[S]`` true ids (ignored where not ``include``d).
        counts: ``[S, V]`` history visit counts (`history_counts`); the target's is ignored.
        target_weight: ``w``; 1.0 gives plain cross-entropy.
        skip_empty: HGARN's quirk: a sample with no history besides its target adds nothing
            (instead of plain cross-entropy); the caller still counts it in the divisor.
    """
    safe_target = target.clamp_min(0)
    counts = counts.scatter(1, safe_target[:, None], 0.0)
    total = counts.sum(1)
    has_history = total > 0
    log_p = F.log_softmax(logits.float(), dim=1)
    truth = -log_p.gather(1, safe_target[:, None]).squeeze(1)
    share = counts / total.clamp_min(1)[:, None]
    # where(share > 0): a model may score an item -inf; 0 * -inf must not turn into NaN
    history = -torch.where(share > 0, share * log_p, torch.zeros_like(log_p)).sum(1)
    mixed = target_weight * truth + (1 - target_weight) * history
    empty = torch.zeros_like(truth) if skip_empty else truth
    per_sample = torch.where(has_history, mixed, empty)
    return torch.where(include, per_sample, torch.zeros_like(per_sample)).sum()
