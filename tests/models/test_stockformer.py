"""Stockformer and stockformer-faithful: shapes, the parameter count of the official sizes, the
faithful forward against a plain transcription of the official equations, causality of the
encoder, the copy op, masking of unobserved stocks, determinism, gradient flow and bad input."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import pywt
import torch
import torch.nn.functional as F

from stgraph.errors import InputError
from stgraph.models import build_model
from stgraph.models.base import count_parameters
from stgraph.models.stockformer import Stockformer
from stgraph.nn.stock_layers import copy_rows
from stgraph.tasks.cross_section.batch import CrossSectionInputs, StockContext

B, W, H, N, FAC, DIM = 2, 8, 2, 6, 5, 16
SMALL = {"dim": DIM}


def make_context(n: int = N, f: int = FAC, w: int = W, emb_dim: int | None = 12) -> StockContext:
    emb = None if emb_dim is None else torch.randn(n, emb_dim, generator=_gen(7))
    return StockContext(num_stocks=n, num_factors=f, window=w, horizon=H, embedding=emb)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_inputs(
    b: int = B, n: int = N, f: int = FAC, w: int = W, seed: int = 0, missing: float = 0.1
) -> CrossSectionInputs:
    """Random returns and factors, zero where a stock is unobserved (as the task gives them),
    real calendar codes (weekday 0-6, month 0-11)."""
    g = _gen(seed)
    observed = torch.rand(b, w, n, generator=g) >= missing
    return CrossSectionInputs(
        factors=torch.randn(b, w, n, f, generator=g) * observed[..., None],
        returns=0.02 * torch.randn(b, w, n, generator=g) * observed,
        observed=observed,
        calendar=torch.stack(
            [torch.randint(0, 7, (b, w + H), generator=g), torch.randint(0, 12, (b, w + H))],
            dim=-1,
        ),
        anchor=torch.arange(b),
    )


def build(name: str, params: dict | None = None, context: StockContext | None = None, seed=0):
    torch.manual_seed(seed)
    return build_model(name, {**SMALL, **(params or {})}, context or make_context())


def replace(inputs: CrossSectionInputs, **fields) -> CrossSectionInputs:
    return CrossSectionInputs(**{**inputs.__dict__, **fields})


@pytest.mark.parametrize("name", ["stockformer", "stockformer-faithful"])
def test_output_shapes(name: str) -> None:
    model = build(name)
    out = model(make_inputs())
    assert out.score.shape == (B, H, N) and out.low_score.shape == (B, H, N)
    assert out.logits.shape == (B, H, N, 2) and out.low_logits.shape == (B, H, N, 2)
    assert all(t.isfinite().all() for t in (out.score, out.logits, out.low_score))
    # The heads are shared: the two streams differ only by what they read.
    assert not torch.allclose(out.score, out.low_score)


def test_parameter_count_of_the_official_sizes() -> None:
    # The official model for D = 128, L = 2, T1 = 20, T2 = 2, by layer:
    #   start FFs 2 * ((F+2)*128 + 128 + 128*128 + 128)  = 125,952 at F = 360
    #   calendar FF 55*128 + 128 + 16,512                  =  23,680
    #   per encoder layer: TCN 2*128*128 + 128 = 32,896; temporal attention 6 * 16,512 =
    #   99,072; two spatial attentions 2 * (6 * 16,512 + proj 129) = 198,402 -> 330,370, x2
    #                                                      = 660,740
    #   fusion 8 * 16,512 (with the unused low key/value)  = 132,096
    #   horizon projections 2 * (20*2 + 2)                 =      84
    #   heads 16,512 + 258 + 16,512 + 129                  =  33,411
    # = 975,963 at F = 360. The official log reports 976,219 = 975,963 + 256: each factor adds
    # 2 * 128 to the start FFs, so the logged run read 361 factor files (infea = files + 2).
    # No parameter depends on N when the context's stock embedding is 128 wide.
    for n in (84, 255):
        for f, expected in ((360, 975_963), (361, 976_219)):
            context = make_context(n=n, f=f, w=20, emb_dim=128)
            model = build_model("stockformer-faithful", {}, context)
            assert count_parameters(model) == expected
    # Clean: without the unused layers (-4*129 - 2*16,512), calendar embeddings of 7 + 12 codes
    # instead of 55 (-36*128), the observed flag as an input (+2*128): 938,071.
    clean = build_model("stockformer", {}, make_context(n=84, f=360, w=20, emb_dim=128))
    assert count_parameters(clean) == 975_963 - 33_540 - 36 * 128 + 256 == 938_071
    # No context embedding: a learned [N, 128] table; another width: a projection to 128.
    assert count_parameters(build_model("stockformer", {}, make_context(84, 360, 20, None))) == (
        938_071 + 84 * 128
    )
    assert count_parameters(build_model("stockformer", {}, make_context(84, 360, 20, 32))) == (
        938_071 + 32 * 128 + 128
    )


def _reference(model: Stockformer, x: CrossSectionInputs) -> tuple[torch.Tensor, ...]:
    """The official forward written out plainly on ``model``'s weights: pywt per window, the
    one-hot calendar, the kernel-2 ``conv2d`` with its chomp, ``-32767`` masks, the copy op as
    a one-hot matrix product and the ``conv2d`` horizon map. Eval mode (no dropout)."""
    d = model.config.dim
    r = x.returns.double().numpy()
    low, high = np.zeros_like(r), np.zeros_like(r)
    for b in range(r.shape[0]):
        for n in range(r.shape[2]):
            ca, cd = pywt.wavedec(r[b, :, n], "sym2", mode="zero", level=1)
            low[b, :, n] = pywt.waverec([ca, None], "sym2")[: r.shape[1]]
            high[b, :, n] = pywt.waverec([None, cd], "sym2")[: r.shape[1]]
    ind = (x.returns > 0).float()[..., None]

    def ff(seq, h):
        return seq[2](F.relu(seq[0](h)))

    def norm(h):
        return F.layer_norm(h, (d,))

    start = model.start
    xl = ff(start.low, torch.cat([torch.from_numpy(low).float()[..., None], ind, x.factors], -1))
    xh = ff(start.high, torch.cat([torch.from_numpy(high).float()[..., None], ind, x.factors], -1))
    onehot = torch.cat(
        [F.one_hot(x.calendar[..., 0] % 5, 5), F.one_hot(x.calendar[..., 1] % 50, 50)], -1
    ).float()
    te = ff(model.calendar.ff, onehot)[:, :, None]
    w = x.returns.shape[1]
    emb = model.position()

    def attention(q, k, v, causal):
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        if causal:
            keep = torch.ones(s.shape[-2:]).tril().bool()
            s = torch.where(keep, s, torch.full_like(s, -(2**15) + 1))
        return s.softmax(-1)

    for layer in model.encoder:
        t = layer.temporal
        h = (xl + te[:, :w]).permute(0, 2, 1, 3)
        q, k, v = t.attn.in_proj(h).chunk(3, -1)
        h2 = norm(t.attn.out_proj(attention(q, k, v, True) @ v) + h)
        xl = norm(ff(t.ff, h2) + h2).permute(0, 2, 1, 3)
        lin = layer.conv.linear
        kernel = torch.stack([lin.weight[:, :d], lin.weight[:, d:]], -1)[:, :, None]
        conv = F.conv2d(xh.permute(0, 3, 2, 1), kernel, lin.bias, padding=(0, 1))[..., :-1]
        xh = F.relu(conv).permute(0, 3, 2, 1)
        branches = []
        for block, xb in ((layer.spatial_low, xl), (layer.spatial_high, xh)):
            xp = xb + emb
            q, k, v = block.attn.in_proj(xp).chunk(3, -1)
            a = attention(q, k, v, False)
            out = a @ v
            if block.copy_op:
                pick = F.one_hot(a.argmax(dim=-2), xb.shape[2]).float()  # [.., key j, query i]
                out = pick @ out
            branches.append(ff(block.ff, norm(block.attn.out_proj(out) + xp)) + xb)
        xl, xh = branches

    def horizon(proj, h):
        weight = proj.linear.weight[:, :, None, None]
        return F.conv2d(h, weight, proj.linear.bias)

    fu = model.fusion
    yl = horizon(model.horizon_low, xl) + te[:, w:]
    yh = horizon(model.horizon_high, xh) + te[:, w:]
    q = fu.query(yl).permute(0, 2, 1, 3)
    k = F.relu(fu.key(yh)).permute(0, 2, 1, 3)
    v = F.relu(fu.value(yh)).permute(0, 2, 1, 3)
    h = norm(fu.out((attention(q, k, v, True) @ v).permute(0, 2, 1, 3)) + yl)
    fused = norm(ff(fu.ff, h) + h)
    return (
        ff(model.regression_head, fused)[..., 0],
        ff(model.class_head, fused),
        ff(model.regression_head, yl)[..., 0],
        ff(model.class_head, yl),
    )


@pytest.mark.parametrize("copy_op", [True, False])
def test_faithful_matches_the_official_equations(copy_op: bool) -> None:
    context = make_context(emb_dim=DIM)
    model = build("stockformer-faithful", {"copy_op": copy_op}, context).eval()
    x = make_inputs(missing=0.0)
    x = replace(x, calendar=x.calendar * 9)  # codes beyond 5 and 50: the modulo matters
    with torch.no_grad():
        out = model(x)
        ref = _reference(model, x)
    for got, want in zip((out.score, out.logits, out.low_score, out.low_logits), ref, strict=True):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_copy_rows_by_hand() -> None:
    attn = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]]])
    out = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]])
    # Key 0 is attended most by query 0, key 1 by query 1, key 2 by queries 1 and 2 (tie: 1).
    torch.testing.assert_close(copy_rows(attn, out), out[:, [0, 1, 1]])


def test_copy_op_changes_outputs_and_switches_off() -> None:
    with_copy = build("stockformer-faithful", {"copy_op": True}).eval()
    without = build("stockformer-faithful", {"copy_op": False}).eval()
    without.load_state_dict(with_copy.state_dict())
    x = make_inputs()
    with torch.no_grad():
        a, b = with_copy(x), without(x)
    assert (a.score - b.score).abs().max() > 1e-3
    with pytest.raises(InputError, match="single attention head"):
        build("stockformer-faithful", {"copy_op": True, "heads": 2})


@pytest.mark.parametrize("name", ["stockformer", "stockformer-faithful"])
def test_encoder_causality(name: str) -> None:
    model = build(name).eval()
    x = make_inputs(missing=0.0)
    s = 4  # change every input after day s
    later = torch.arange(W) > s
    y = replace(
        x,
        returns=torch.where(later[None, :, None], -x.returns + 0.05, x.returns),
        factors=torch.where(later[None, :, None, None], x.factors + 1.0, x.factors),
    )
    with torch.no_grad():
        split_x, split_y = model.split(x.returns), model.split(y.returns)
        enc_x, enc_y = model.encode(x)[:2], model.encode(y)[:2]
    if name == "stockformer":  # causal split and encoder: days <= s are untouched
        for a, b in zip((*split_x, *enc_x), (*split_y, *enc_y), strict=True):
            torch.testing.assert_close(a[:, : s + 1], b[:, : s + 1], atol=1e-6, rtol=0)
            assert (a[:, s + 1 :] - b[:, s + 1 :]).abs().max() > 1e-4
    else:  # the official DWT/IDWT reaches back one day from the change (sym2, level 1)
        assert (split_x[0][:, s] - split_y[0][:, s]).abs().max() > 1e-4
        torch.testing.assert_close(split_x[0][:, : s - 2], split_y[0][:, : s - 2])
        assert (enc_x[0][:, s] - enc_y[0][:, s]).abs().max() > 1e-4


def test_clean_masks_unobserved_stocks_as_keys() -> None:
    model = build("stockformer").eval()
    x = make_inputs(missing=0.0)
    gone = torch.zeros(N, dtype=torch.bool)
    gone[2] = True  # stock 2 never trades in the window
    observed = x.observed & ~gone
    a = replace(x, observed=observed)
    # Garbage in the unobserved stock's inputs reaches no other stock.
    b = replace(
        a,
        returns=torch.where(gone, 0.3, a.returns),
        factors=torch.where(gone[:, None], 5.0, a.factors),
    )
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    keep = ~gone
    torch.testing.assert_close(out_a.score[..., keep], out_b.score[..., keep])
    torch.testing.assert_close(out_a.logits[..., keep, :], out_b.logits[..., keep, :])
    assert (out_a.score[..., gone] - out_b.score[..., gone]).abs().max() > 1e-4
    # The faithful model attends to every stock: the garbage spreads.
    faithful = build("stockformer-faithful").eval()
    with torch.no_grad():
        diff = faithful(a).score[..., keep] - faithful(b).score[..., keep]
    assert diff.abs().max() > 1e-4
    # A day without any traded stock stays finite.
    none = replace(x, observed=torch.zeros_like(x.observed))
    with torch.no_grad():
        assert model(none).score.isfinite().all()


@pytest.mark.parametrize("name", ["stockformer", "stockformer-faithful"])
def test_deterministic_under_a_seed(name: str) -> None:
    x = make_inputs()
    outs = []
    for _ in range(2):
        model = build(name, seed=3).train()
        torch.manual_seed(11)  # dropout draws
        outs.append(model(x).score)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).score, model(x).score, atol=0, rtol=0)
    other = build(name, seed=4)
    assert not torch.equal(other.class_head[0].weight, model.class_head[0].weight)


def _grads(model: Stockformer) -> dict[str, torch.Tensor | None]:
    model.train()
    out = model(make_inputs())
    loss = sum(t.abs().mean() for t in (out.score, out.logits, out.low_score, out.low_logits))
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_gradient_reaches_every_parameter_of_the_clean_model() -> None:
    grads = _grads(build("stockformer", context=make_context(emb_dim=None)))
    assert "stock_embedding" in grads
    missing = [name for name, g in grads.items() if g is None or not g.abs().sum() > 0]
    assert missing == []


def test_faithful_unused_layers_get_no_gradient() -> None:
    grads = _grads(build("stockformer-faithful"))
    dead = sorted(name for name, g in grads.items() if g is None)
    layers = [f"encoder.{i}.spatial_{b}.proj" for i in (0, 1) for b in ("high", "low")]
    layers += ["fusion.key_low", "fusion.value_low"]
    assert dead == sorted(f"{layer}.{p}" for layer in layers for p in ("bias", "weight"))
    assert all(g.abs().sum() > 0 for g in grads.values() if g is not None)


def test_clean_calendar_and_faithful_wrap() -> None:
    x = make_inputs()
    bad = replace(x, calendar=x.calendar + torch.tensor([7, 0]))  # weekday 7..13
    with pytest.raises(InputError, match="calendar"):
        build("stockformer")(bad)
    # The official encoding takes codes modulo 5 and 50: +5 on the weekday changes nothing.
    model = build("stockformer-faithful").eval()
    shifted = replace(x, calendar=x.calendar + torch.tensor([5, 50]))
    with torch.no_grad():
        torch.testing.assert_close(model(x).score, model(shifted).score)


def test_bad_config_and_inputs() -> None:
    with pytest.raises(InputError, match="divisible"):
        build("stockformer", {"heads": 3})
    with pytest.raises(InputError, match="embedding"):
        build_model(
            "stockformer",
            SMALL,
            StockContext(
                num_stocks=N, num_factors=FAC, window=W, horizon=H, embedding=torch.ones(3, 4)
            ),
        )
    with pytest.raises(InputError, match="dropout"):
        build("stockformer", {"dropout": 1.0})
    model = build("stockformer")
    with pytest.raises(InputError, match="inputs.factors"):
        model(make_inputs(f=FAC + 1))
    x = make_inputs()
    with pytest.raises(InputError, match="inputs.calendar"):
        model(replace(x, calendar=x.calendar[:, :-1]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stockformer", "stockformer-faithful"])
def test_official_size_step_time(name: str) -> None:
    """Forward + backward of 12 dates, 84 stocks, 360 factors (printed, not asserted)."""
    context = make_context(n=84, f=360, w=20, emb_dim=128)
    model = build_model(name, {}, context).train()
    x = make_inputs(b=12, n=84, f=360, w=20)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = model(x)
        (out.score.abs().mean() + out.logits.mean()).backward()
        times.append(time.perf_counter() - start)
    print(f"{name}: forward+backward {min(times):.2f} s (threads={torch.get_num_threads()})")
    assert out.score.shape == (12, H, 84)


def test_low_head_calendar_switch() -> None:
    with_te = build("stockformer-faithful").eval()
    without = build("stockformer-faithful", {"low_head_calendar": False}).eval()
    without.load_state_dict(with_te.state_dict())
    x = make_inputs()
    with torch.no_grad():
        a, b = with_te(x), without(x)
        low = without.horizon_low(without.encode(x)[0])
    torch.testing.assert_close(a.score, b.score)  # the fused stream is the same
    assert (a.low_score - b.low_score).abs().max() > 1e-4
    torch.testing.assert_close(b.low_score, without.regression_head(low)[..., 0])
