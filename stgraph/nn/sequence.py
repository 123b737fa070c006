"""Recurrent encoding of packed rows, read at query positions.

Next-location batches pack one row per user and ask for the state after given positions of it
(`stgraph.tasks.next_location.batch`). `encode_rows` runs a recurrent network once over every
row (a packed sequence: no step past a row's length is computed), and `at_queries` gathers the
state of each query by indexing, with no loop over samples. A recurrent state at position ``p``
depends on positions ``<= p`` only, so the result is causal along each row and exactly the same
as encoding each sample's prefix on its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def encode_rows(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[R, T, F] -> [R, T, H]``: ``rnn`` (``batch_first``) over each row's first
    ``lengths[r]`` steps; steps past a row's length are zero.

    Raises:
        ValueError: a row is empty (every row of a batch holds at least one check-in).
    """
    if x.shape[0] and int(lengths.min()) < 1:
        raise ValueError("every row needs at least one step (a length of 0 was given)")
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


def at_queries(states: torch.Tensor, row: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``[R, T, H] -> [S, H]``: the state of row ``row[s]`` at position ``pos[s]``."""
    return states[row, pos]
