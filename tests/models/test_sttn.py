"""STTN (paper design) and STTN-faithful (released code): shapes, masks, roll-out, round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.models import MODELS, build_model
from stgraph.models.sttn import SttnFaithful, SttnFaithfulConfig
from stgraph.tasks.forecast import ForecastContext, ForecastInputs

N, W, H, B = 9, 12, 12, 3
SMALL = {"embed_dim": 16, "num_layers": 2, "num_heads": 2, "ffn_dim": 16, "head_dim": 32}
SMALL_FAITHFUL = {"lift_dim": 8, "embed_dim": 16, "ffn_dim": 16, "head_dim": 32}


def graph() -> Graph:
    src = torch.arange(N)
    dst = (src + 1) % N
    index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    return Graph(index, torch.linspace(0.5, 1.0, index.shape[1]), N)


def context(channels: int = 1) -> ForecastContext:
    return ForecastContext(N, channels, 1, W, H, 288, graph())


def batch(channels: int = 1, seed: int = 0) -> ForecastInputs:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, W, N, channels, generator=g) > 0.2
    x = torch.where(mask, torch.randn(B, W, N, channels, generator=g), 0.0)
    return ForecastInputs(
        x=x,
        x_mask=mask,
        x_tod=torch.arange(W).float().repeat(B, 1) / 288,
        x_dow=torch.zeros(B, W, dtype=torch.long),
        y_tod=(torch.arange(H).float() + W).repeat(B, 1) / 288,
        y_dow=torch.zeros(B, H, dtype=torch.long),
        anchor=torch.arange(B),
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registered():
    assert "sttn" in MODELS and "sttn-faithful" in MODELS
    with pytest.raises(InputError):
        build_model("sttn", {"embed_dimm": 8}, context())
    with pytest.raises(InputError):
        build_model("sttn", {"spatial_encoding": "bogus"}, context())


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"spatial_encoding": "learnable", "temporal_encoding": "sinusoidal"},
        {"spatial_encoding": "none", "temporal_encoding": "none", "calendar": False},
        {"spatial_neighbours": 4},
        {"cheb_order": 0, "mask_channel": False},
        {"checkpoint": True},
    ],
)
def test_sttn_shapes_and_gradients(params):
    model = build_model("sttn", {**SMALL, **params}, context(2))
    out = model(batch(2))
    assert out.shape == (B, H, N, 1)
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    model.eval()
    assert model(batch(2)).shape == (B, H, N, 1)


def test_sttn_ignores_unobserved_values_and_uses_the_mask():
    model = build_model("sttn", SMALL, context()).eval()
    data = batch()
    poked = dataclasses.replace(data, x=torch.where(data.x_mask, data.x, 123.0))  # garbage
    assert torch.allclose(model(data), model(poked))
    hidden = dataclasses.replace(data, x_mask=data.x_mask.clone())
    hidden.x_mask[:, -1] = False
    assert not torch.allclose(model(data), model(hidden))


def test_sttn_uses_the_calendar():
    model = build_model("sttn", SMALL, context()).eval()
    data = batch()
    shifted = dataclasses.replace(data, x_tod=data.x_tod + 0.5)
    assert not torch.allclose(model(data), model(shifted))


def test_sttn_neighbourhood_with_all_nodes_equals_full_attention():
    full = build_model("sttn", SMALL, context()).eval()
    local = build_model("sttn", {**SMALL, "spatial_neighbours": N}, context()).eval()
    local.load_state_dict(full.state_dict())
    assert torch.allclose(full(batch()), local(batch()), atol=1e-5)


@pytest.mark.parametrize(("name", "params"), [("sttn", SMALL), ("sttn-faithful", SMALL_FAITHFUL)])
def test_state_dict_round_trip(name, params, tmp_path):
    model = build_model(name, params, context()).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    torch.manual_seed(123)
    other = build_model(name, params, context()).eval()
    assert not torch.allclose(model(batch()), other(batch()))
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(model(batch()), other(batch()))


def test_faithful_trains_one_step_and_rolls_out_in_eval():
    model = build_model("sttn-faithful", SMALL_FAITHFUL, context())
    out = model(batch())
    assert out.shape == (B, 1, N, 1)
    out.sum().backward()
    model.eval()
    assert model(batch()).shape == (B, H, N, 1)


def test_faithful_rollout_feeds_predictions_back():
    model = build_model("sttn-faithful", SMALL_FAITHFUL, context()).eval()
    x = batch().x
    calls = []
    original = model.step

    def counting_step(inputs):
        calls.append(inputs)
        return original(inputs)

    model.step = counting_step
    rolled = model(batch())
    assert len(calls) == H
    first = original(x)
    assert torch.allclose(rolled[:, :1], first)
    shifted = torch.cat([x[:, 1:], first], dim=1)
    assert torch.allclose(rolled[:, 1:2], original(shifted), atol=1e-6)
    assert torch.equal(calls[1], shifted)


def test_faithful_rollout_keeps_covariates_of_the_last_frame():
    model = build_model("sttn-faithful", SMALL_FAITHFUL, context(2)).eval()
    x = batch(2).x
    first = model.step(x)
    rolled = model.rollout(x, 2)
    frame = x[:, -1:].clone()
    frame[..., :1] = first
    assert torch.allclose(rolled[:, 1:2], model.step(torch.cat([x[:, 1:], frame], 1)), atol=1e-6)


def test_faithful_concat_free_layers_equal_explicit_concatenation():
    model: SttnFaithful = build_model("sttn-faithful", SMALL_FAITHFUL, context()).eval()
    with torch.no_grad():
        model.time_table.add_(torch.randn(W, W))  # make the tables non-trivial
        model.spatial_table.add_(torch.randn(N, N))
    x = batch().x
    h = model.lift(x)
    wide = torch.cat(
        [h, model.spatial_table.expand(B, W, N, N), model.time_table[:, None].expand(B, W, N, W)],
        dim=-1,
    )
    table = model._table_terms(model.spatial_res)
    assert torch.allclose(
        model._wide_linear(model.spatial_res, h, table), model.spatial_res(wide), atol=1e-5
    )
    assert torch.allclose(model._cheb_wide(h), model.cheb(wide), atol=1e-4)


def test_faithful_tables_start_sane():
    model = build_model("sttn-faithful", SMALL_FAITHFUL, context())
    e = model.spatial_table.detach()
    assert torch.allclose(e.T @ e, torch.eye(N), atol=1e-4)  # orthonormal eigenvectors
    assert torch.equal(model.time_table.detach(), torch.eye(W))
    assert torch.equal(model.time_table2.detach(), torch.eye(W))


def test_faithful_parameters_match_a_hand_count_of_the_release_layers():
    """Each layer's parameter count at SMALL_FAITHFUL's widths, counted by hand from the layer
    list of specs/sttn.md section 4 (a wrong width or a missing bias changes a count)."""
    model = build_model("sttn-faithful", SMALL_FAITHFUL, context())
    c_in, lift, d, ffn, head, k = 1, 8, 16, 16, 32, 3
    wide = lift + N + W  # [lift, E_s, E_t] concatenated on channels
    # One-head BERT layer: fused qkv, output dense, FFN d -> ffn -> d, two LayerNorms.
    bert = (d * 3 * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 2 * 2 * d
    expected = {
        "spatial_table": N * N,
        "time_table": W * W,
        "time_table2": W * W,
        "lift": c_in * lift + lift,
        "spatial_res": wide * d + d,
        "spatial_proj": wide * d + d,
        "cheb": k * wide * d + d,
        "spatial": bert,
        "temporal_res": (d + W) * d + d,
        "temporal_proj": (d + W) * d + d,
        "temporal": bert,
        "block_norm": 2 * N * d,  # affine per (node, channel)
        "out_conv": W * d * d + d,  # the temporal conv spanning the window
        "out_norm": 2 * N * d,
        "fc1": d * head,
        "fc1_bias": N * head,  # per-node biases only
        "fc2": head * 1,
        "fc2_bias": N * 1,
    }
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        top = name.split(".")[0]
        counts[top] = counts.get(top, 0) + parameter.numel()
    assert counts == expected
    assert sum(counts.values()) == 11578  # the sum of the hand counts above


def test_faithful_config_defaults_are_the_release_values():
    # SttnFaithfulConfig stands alone (see its comment), so all its defaults are pinned here;
    # dropout and head_dim are the ones that differ from SttnConfig's.
    assert dataclasses.asdict(SttnFaithfulConfig()) == {
        "lift_dim": 32,
        "embed_dim": 64,
        "ffn_dim": 128,
        "cheb_order": 3,
        "graph_weight": 0.1,
        "dropout": 0.1,
        "head_dim": 512,
        "head_dropout": 0.2,
        "spatial_table_init": "eigenvectors",
    }
