"""Stockformer: a dual-frequency spatiotemporal transformer for cross-sectional stock selection.

After Ma, Xue, Lu, Chen, "Stockformer: A Price-Volume Factor Stock Selection Model Based on
Wavelet Transform and Multi-Task Self-Attention Networks", arXiv 2401.06139, and its official
code (Eric991005/Multitask-Stockformer at ``1e82699``; facts in ``specs/stockformer.md``
sections 3-5). Layers: `stgraph.nn.stock_layers`.

For each date the model reads ``W`` days of every stock's return and factors and answers the ``H``
days after it:

1. The returns window splits into a low- and a high-frequency part (`WaveletSplit`).
2. Start embeddings ``FF([low | high, 1[r > 0], factors]) -> D`` per branch; a calendar encoding
   of the ``W + H`` days.
3. ``layers`` dual encoder layers. Low branch: ``x += te``, causal temporal self-attention and FF.
   High branch: a causal convolution of kernel 2, ReLU, dropout. Then each branch runs attention
   over the stocks of every day with the stock embedding added, ``x <- spatial(x) + x``.
4. A linear map of the ``W`` days to the ``H`` target days per branch, and the adaptive fusion of
   the low stream (query) with the high stream (keys and values), causal over the ``H`` days.
5. Heads shared by the fused and the low stream: direction ``D -> D -> 2`` and regression
   ``D -> D -> 1``. ``score``/``logits`` come from the fused stream, ``low_score``/``low_logits``
   from the low one (trained on the task's ``low_target``).

The stock embedding is ``context.embedding`` (projected by a ``Linear`` when its width is not
``dim``), or a learned ``[N, dim]`` table when the context has none.

Deviations of ``stockformer`` (clean) from the official code:
- Causal wavelet split (`WaveletSplit(causal=True)`): a day's low/high parts depend on no later
  day. The official per-window DWT/IDWT (zero padding) mixes each day with the days after it.
- Calendar: one embedding row per value of the real day-of-week and month codes
  (``context.calendar_sizes``), instead of one-hot ``code0 mod 5`` and ``code1 mod 50`` of the
  official synthetic calendar.
- A third input channel: the ``observed`` flag, so a suspended day is not read as a zero return.
- Spatial attention: soft multi-head attention (``heads = 4``), no argmax copy op; stocks that did
  not trade that day are masked as keys.
- Temporal attention with ``heads = 4`` too (the official is single-head); the fusion stays
  single-head.
- Kaiming-uniform (ReLU gain) weights and zero biases in both heads, which the official
  ``maml_init_`` meant to do but never reaches a ``Linear`` (it keeps torch's default init).
- Without the official code's unused layers (``proj`` of each spatial attention and the fusion's
  low-stream key and value), which never get a gradient.
- A learned stock embedding when the context has none (the official needs struc2vec's, fitted on
  the whole period, test included; the task fits the context's on training days).

``stockformer-faithful`` reproduces the official code: the two-sided DWT/IDWT split (sym2, level
1, zero mode), the ``mod 5``/``mod 50`` one-hot calendar, single-head attention everywhere, the
argmax copy op, no masking of unobserved stocks, torch's default init everywhere and the unused
layers: 975,963 parameters at 360 factors (the official log's 976,219 is 361 factor inputs; see
the tests). Both keep the official in-place quirk through which the low-stream heads read the low
projection plus the future days' calendar encoding (``low_head_calendar``). Each quirk is a switch
of the config.

Cost at the official sizes (``W = 20``, ``F = 360``, ``D = 128``): about 32 GFLOP forward and 93
GFLOP forward + backward per batch of 12 dates of 84 stocks, nearly all in ``D x D`` GEMMs over the
``B * W * N`` positions; 98 / 282 GFLOP at 255 stocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stgraph.config import option, redefault
from stgraph.errors import InputError
from stgraph.models.base import MODELS, CrossSectionModel, ModelConfig
from stgraph.nn.stock_layers import (
    AdaptiveFusion,
    CalendarEncoding,
    CausalConv,
    DualStartEmbedding,
    HorizonProjection,
    SpatialAttentionBlock,
    TemporalAttentionBlock,
    mlp,
)
from stgraph.nn.wavelet import WaveletSplit
from stgraph.tasks.cross_section.batch import CrossSectionInputs, CrossSectionOutput, StockContext

OFFICIAL_CALENDAR = (5, 50)  # the official one-hot sizes ("day of week", "time of day")


@dataclass
class StockformerConfig(ModelConfig):
    dim: int = option(128, "channels D of every layer (the official h * d = 1 * 128)")
    layers: int = option(2, "dual encoder layers")
    heads: int = option(4, "heads of the temporal and spatial attention (1 with copy_op)")
    dropout: float = option(0.2, "dropout after the high branch's causal convolution")
    wavelet: str = option("sym2", "wavelet of the low/high split (a pywt orthogonal wavelet)")
    wavelet_level: int = option(1, "levels of the low/high split")
    causal_wavelet: bool = option(
        True, "causal undecimated split; False: the official per-window DWT/IDWT (zero mode)"
    )
    observed_input: bool = option(True, "feed the observed flag as a third input channel")
    official_calendar: bool = option(
        False, "one-hot of code0 mod 5 and code1 mod 50 (official) instead of calendar_sizes"
    )
    mask_unobserved: bool = option(
        True, "spatial attention ignores stocks that did not trade that day (as keys)"
    )
    copy_op: bool = option(
        False, "the official argmax copy after spatial attention (needs heads = 1)"
    )
    low_head_calendar: bool = option(
        True, "the low-stream heads read the low projection plus the future days' calendar"
    )
    kaiming_heads: bool = option(
        True, "Kaiming-uniform weights and zero biases in the heads (official: torch default)"
    )
    dead_layers: bool = option(
        False, "hold the official unused layers (spatial proj, fusion low key/value)"
    )


@dataclass
class StockformerFaithfulConfig(StockformerConfig):
    """`StockformerConfig` with the official code's behaviour: only the differing defaults."""

    heads: int = redefault(StockformerConfig, "heads", 1)
    causal_wavelet: bool = redefault(StockformerConfig, "causal_wavelet", False)
    observed_input: bool = redefault(StockformerConfig, "observed_input", False)
    official_calendar: bool = redefault(StockformerConfig, "official_calendar", True)
    mask_unobserved: bool = redefault(StockformerConfig, "mask_unobserved", False)
    copy_op: bool = redefault(StockformerConfig, "copy_op", True)
    kaiming_heads: bool = redefault(StockformerConfig, "kaiming_heads", False)
    dead_layers: bool = redefault(StockformerConfig, "dead_layers", True)


class DualEncoderLayer(nn.Module):
    """One dual encoder layer (step 3 of the module docstring)."""

    def __init__(self, c: StockformerConfig) -> None:
        super().__init__()
        self.temporal = TemporalAttentionBlock(c.dim, c.heads)
        self.conv = CausalConv(c.dim, c.dropout)
        self.spatial_low = SpatialAttentionBlock(c.dim, c.heads, c.copy_op, c.dead_layers)
        self.spatial_high = SpatialAttentionBlock(c.dim, c.heads, c.copy_op, c.dead_layers)

    def forward(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        te: torch.Tensor,
        position: torch.Tensor,
        key_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.temporal(low, te)
        high = self.conv(high)
        low = self.spatial_low(low, position, key_mask) + low
        high = self.spatial_high(high, position, key_mask) + high
        return low, high


def _check(c: StockformerConfig, context: StockContext) -> None:
    if c.dim < 1 or c.layers < 1 or c.heads < 1:
        raise ValueError(f"dim, layers and heads must be >= 1, got {c.dim}, {c.layers}, {c.heads}")
    if c.dim % c.heads:
        raise ValueError(f"dim {c.dim} is not divisible by heads {c.heads}")
    if not 0.0 <= c.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {c.dropout}")
    if min(context.num_stocks, context.num_factors, context.window, context.horizon) < 1:
        raise ValueError("stockformer needs at least one stock, factor, input day and target day")
    emb = context.embedding
    if emb is not None and (emb.dim() != 2 or emb.shape[0] != context.num_stocks):
        raise ValueError(
            f"context.embedding must be [num_stocks={context.num_stocks}, E], "
            f"got {tuple(emb.shape)}"
        )


@MODELS.register("stockformer")
class Stockformer(CrossSectionModel):
    """Stockformer (Ma et al., arXiv 2401.06139), clean variant (see the module docstring)."""

    config_class = StockformerConfig

    def __init__(self, config: StockformerConfig, context: StockContext) -> None:
        super().__init__(config, context)
        c = config
        _check(c, context)
        self.split = WaveletSplit(c.wavelet, c.wavelet_level, causal=c.causal_wavelet, mode="zero")
        self.start = DualStartEmbedding(context.num_factors, 2 if c.observed_input else 1, c.dim)
        sizes = OFFICIAL_CALENDAR if c.official_calendar else context.calendar_sizes
        self.calendar = CalendarEncoding(sizes, c.dim, wrap=c.official_calendar)
        self.encoder = nn.ModuleList(DualEncoderLayer(c) for _ in range(c.layers))
        emb = context.embedding
        if emb is None:
            self.stock_embedding = nn.Parameter(0.02 * torch.randn(context.num_stocks, c.dim))
        else:
            self.register_buffer("stock_embedding", emb.detach().float().clone())
            if emb.shape[1] != c.dim:
                self.stock_projection = nn.Linear(emb.shape[1], c.dim)
        self.horizon_low = HorizonProjection(context.window, context.horizon)
        self.horizon_high = HorizonProjection(context.window, context.horizon)
        self.fusion = AdaptiveFusion(c.dim, c.dead_layers)
        self.class_head = mlp((c.dim, c.dim, 2))
        self.regression_head = mlp((c.dim, c.dim, 1))
        if c.kaiming_heads:
            for layer in (*self.class_head, *self.regression_head):
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)

    def _check_inputs(self, inputs: CrossSectionInputs) -> None:
        ctx = self.context
        want = (ctx.window, ctx.num_stocks, ctx.num_factors)
        if tuple(inputs.factors.shape[1:]) != want:
            raise InputError(
                f"inputs.factors must be [B, {want[0]}, {want[1]}, {want[2]}] (window, stocks, "
                f"factors of the context), got {tuple(inputs.factors.shape)}"
            )
        if inputs.calendar.shape[1] != ctx.window + ctx.horizon:
            raise InputError(
                f"inputs.calendar must cover window + horizon = {ctx.window + ctx.horizon} days, "
                f"got {inputs.calendar.shape[1]}"
            )

    def position(self) -> torch.Tensor:
        """The ``[N, dim]`` stock embedding added before every spatial attention."""
        proj = getattr(self, "stock_projection", None)
        return self.stock_embedding if proj is None else proj(self.stock_embedding)

    def encode(self, inputs: CrossSectionInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(low, high, calendar)``: the encoder's ``[B, W, N, dim]`` streams and the
        ``[B, W + H, 1, dim]`` calendar encoding."""
        self._check_inputs(inputs)
        returns = inputs.returns.float()
        low, high = self.split(returns)
        extra = [(returns > 0).float()]
        if self.config.observed_input:
            extra.append(inputs.observed.float())
        low, high = self.start(low, high, torch.stack(extra, dim=-1), inputs.factors)
        te = self.calendar(inputs.calendar)
        key_mask = None
        if self.config.mask_unobserved:
            b, w, n = inputs.observed.shape
            seen = inputs.observed.reshape(b * w, n).bool()
            # A day without any traded stock attends to all (a fully masked row is NaN).
            seen = seen | ~seen.any(dim=-1, keepdim=True)
            key_mask = seen.view(b * w, 1, 1, n)
        position = self.position()
        window_te = te[:, : self.context.window]
        for layer in self.encoder:
            low, high = layer(low, high, window_te, position, key_mask)
        return low, high, te

    def forward(self, inputs: CrossSectionInputs) -> CrossSectionOutput:
        low, high, te = self.encode(inputs)
        future_te = te[:, self.context.window :]
        low, high = self.horizon_low(low), self.horizon_high(high)
        fused, low_te = self.fusion(low, high, future_te)
        if self.config.low_head_calendar:
            low = low_te
        both = torch.cat([fused, low])  # one pass of each head over both streams
        logits, score = self.class_head(both), self.regression_head(both).squeeze(-1)
        b = fused.shape[0]
        return CrossSectionOutput(
            score=score[:b], logits=logits[:b], low_score=score[b:], low_logits=logits[b:]
        )


@MODELS.register("stockformer-faithful")
class StockformerFaithful(Stockformer):
    """Stockformer as its official code behaves (Ma et al., arXiv 2401.06139;
    Eric991005/Multitask-Stockformer ``1e82699``).

    Reproduces: the per-window two-sided sym2 DWT/IDWT split in zero mode; inputs ``[r_low |
    r_high, 1[r > 0], factors]``; the one-hot calendar of ``code0 mod 5`` and ``code1 mod 50``;
    single-head temporal and spatial attention; the argmax copy op after each spatial attention;
    no masking of unobserved stocks; dropout 0.2 after the convolution only; torch's default init
    everywhere (the official ``maml_init_`` never reaches a ``Linear``); the unused ``proj`` and
    fusion low key/value layers; the low heads reading ``low + te_future`` (an in-place add).

    Not reproduced: the ``-32767`` fill of masked scores (``-inf`` here; the softmax is the same
    in float32); the dropout probability, 51/256 = 0.199 with the project's byte-mask dropout;
    the layer names of the official state dict; the struc2vec embedding itself (the context's
    embedding is used, projected when not ``dim`` wide, or a learned table when there is none).
    """

    config_class = StockformerFaithfulConfig
