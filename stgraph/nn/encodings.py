"""Positional and calendar encodings for spatiotemporal models.

Spatial (per node, ``[N, dim]``): a learnable table (`NodeEmbedding`) or projected Laplacian
eigenvectors (`LaplacianEncoding`, the graph positional encoding of Dwivedi & Bresson and STTN).
Temporal (per window position, ``[T, dim]``): sinusoidal (Vaswani et al.) or learnable tables.
Calendar (per step, ``[B, T, dim]``): time-of-day and day-of-week embeddings looked up from the
real timestamps (``x_tod``, ``x_dow`` of a `ForecastBatch`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stgraph.graphs.graph import Graph


class NodeEmbedding(nn.Module):
    """A learnable ``[N, dim]`` table, one vector per node.

    Args:
        num_nodes: N.
        dim: embedding width.
        std: standard deviation of the normal initialisation.
    """

    def __init__(self, num_nodes: int, dim: int, std: float = 0.02) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_nodes, dim) * std)

    def forward(self) -> torch.Tensor:
        """The table, ``[N, dim]``."""
        return self.weight


class LaplacianEncoding(nn.Module):
    """Laplacian eigenvectors ``[N, k]`` projected linearly to ``[N, dim]``.

    The eigenvectors are a fixed buffer (derived from the graph, not saved in the state dict);
    only the projection is learned. Eigenvectors are defined up to sign, so training may flip
    their signs at random (``random_sign_flip``) to make the model robust to that choice.

    Args:
        eigenvectors: ``[N, k]``, e.g. from `stgraph.graphs.normalize.laplacian_eigenvectors`.
        dim: output width.
        random_sign_flip: flip each eigenvector's sign at random in training.
    """

    def __init__(
        self, eigenvectors: torch.Tensor, dim: int, random_sign_flip: bool = False
    ) -> None:
        super().__init__()
        self.register_buffer("eigenvectors", eigenvectors.float(), persistent=False)
        self.proj = nn.Linear(eigenvectors.shape[1], dim)
        self.random_sign_flip = random_sign_flip

    @classmethod
    def from_graph(
        cls, graph: Graph, k: int, dim: int, random_sign_flip: bool = False
    ) -> LaplacianEncoding:
        """Encoding from the ``k`` smallest non-trivial eigenvectors of ``graph``'s Laplacian.

        ``k`` is reduced when the graph has fewer non-trivial eigenvalues (tiny graphs).
        """
        from stgraph.errors import InputError
        from stgraph.graphs.normalize import laplacian_eigenvectors

        k = max(1, min(k, graph.num_nodes - 1))
        while True:
            try:
                vectors = laplacian_eigenvectors(graph, k)
                break
            except InputError:
                # Disconnected graphs have fewer non-trivial eigenvalues; fall back to fewer.
                if k == 1:
                    vectors = torch.zeros(graph.num_nodes, 1)
                    break
                k -= 1
        return cls(vectors, dim, random_sign_flip)

    def forward(self) -> torch.Tensor:
        """The encoding, ``[N, dim]``."""
        vectors = self.eigenvectors
        if self.training and self.random_sign_flip:
            signs = torch.randint(0, 2, (1, vectors.shape[1]), device=vectors.device) * 2 - 1
            vectors = vectors * signs
        return self.proj(vectors)


def sinusoidal_table(length: int, dim: int, base: float = 10_000.0) -> torch.Tensor:
    """The ``[length, dim]`` sine/cosine table of Vaswani et al. (sin on even channels)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal encoding of window positions, ``[length, dim]``."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(length, dim), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table


class LearnablePositionalEncoding(nn.Module):
    """A learnable ``[length, dim]`` table of window positions (BERT-style)."""

    def __init__(self, length: int, dim: int, std: float = 0.02) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(length, dim) * std)

    def forward(self) -> torch.Tensor:
        return self.weight


def day_slot(tod: torch.Tensor, steps_per_day: int) -> torch.Tensor:
    """The time-of-day slot ``0 .. steps_per_day - 1`` of a fraction of the day in ``[0, 1)``.

    Rounding (not flooring) guards against 0.99999 style float error at slot boundaries.
    """
    return torch.round(tod * steps_per_day).long() % steps_per_day


class CalendarEmbedding(nn.Module):
    """Time-of-day and day-of-week embeddings, summed: ``[B, T] -> [B, T, dim]``.

    Args:
        steps_per_day: slots of the time-of-day table (one per sampling step of a day).
        dim: embedding width.
        day_of_week: add a 7-entry day-of-week table.
    """

    def __init__(self, steps_per_day: int, dim: int, day_of_week: bool = True) -> None:
        super().__init__()
        self.steps_per_day = steps_per_day
        self.time_of_day = nn.Embedding(steps_per_day, dim)
        self.day_of_week = nn.Embedding(7, dim) if day_of_week else None
        nn.init.normal_(self.time_of_day.weight, std=0.02)
        if self.day_of_week is not None:
            nn.init.normal_(self.day_of_week.weight, std=0.02)

    def forward(self, tod: torch.Tensor, dow: torch.Tensor | None = None) -> torch.Tensor:
        """``tod`` in ``[0, 1)`` (fraction of the day) and ``dow`` in ``0..6``, both ``[B, T]``."""
        out = self.time_of_day(day_slot(tod, self.steps_per_day))
        if self.day_of_week is not None and dow is not None:
            out = out + self.day_of_week(dow.long() % 7)
        return out
