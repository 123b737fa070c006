"""HGARN and hgarn-faithful on tiny hand-made batches: shapes, causality, exact shared-prefix
encoding, trained vs frozen GAT heads, degraded contexts, and a few learning steps. The
helpers `make_inputs` and `make_context` are shared with the baseline tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stgraph.data.checkins.sessions import CheckinTrainView
from stgraph.data.events import EventLog
from stgraph.errors import InputError
from stgraph.graphs.mobility import cooccurrence_graph, membership_graph, radius_graph
from stgraph.models import build_model
from stgraph.models.hgarn import GATBlock, HGARNConfig, HGARNFaithfulConfig
from stgraph.tasks.next_location.batch import MobilityContext, NextLocationInputs

SMALL = {
    "user_dim": 4,
    "location_dim": 8,
    "category_dim": 8,
    "hour_dim": 4,
    "weekday_dim": 3,
    "gat_out": 6,
    "hidden": 12,
}
MODELS = ["hgarn", "hgarn-faithful", "gru", "most-frequent", "markov"]
PARAMS = {"hgarn": SMALL, "hgarn-faithful": SMALL, "gru": {"location_dim": 8, "hidden": 12}}

L, C, U = 7, 3, 3
# Location -> category; locations 0-2 sit within 0.1 km of each other, 3-6 are far apart.
LOCATION_CATEGORY = np.array([0, 0, 1, 1, 2, 2, 0])
COORDS = np.array(
    [[40.7500, -73.99], [40.7505, -73.99], [40.7500, -73.9895]]
    + [[40.70 + 0.05 * i, -73.90] for i in range(4)]
)


def make_inputs(
    rows: list[list[int]],
    queries: list[tuple[int, int]],
    users: list[int] | None = None,
    seed: int = 0,
) -> NextLocationInputs:
    """A packed batch of location rows; categories from `LOCATION_CATEGORY`, random hours and
    weekdays (fixed by ``seed`` and the position), padding 0."""
    width = max(len(r) for r in rows)
    location = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        location[i, : len(r)] = torch.tensor(r)
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([len(r) for r in rows])
    valid = torch.arange(width) < lengths[:, None]
    return NextLocationInputs(
        location=location,
        category=torch.from_numpy(LOCATION_CATEGORY)[location] * valid,
        hour=torch.randint(0, 24, (len(rows), width), generator=gen) * valid,
        weekday=torch.randint(0, 7, (len(rows), width), generator=gen) * valid,
        gap_hours=torch.ones(len(rows), width) * valid,
        user=torch.tensor(users if users is not None else list(range(len(rows)))) % U,
        lengths=lengths,
        query_row=torch.tensor([q[0] for q in queries]),
        query_pos=torch.tensor([q[1] for q in queries]),
    )


def training_columns() -> dict[str, np.ndarray]:
    """Check-ins the graphs are built from (user, location, category, hour)."""
    location = np.array([0, 1, 2, 0, 3, 4, 5, 6, 1, 2, 4, 5])
    return {
        "user": np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]),
        "location": location,
        "category": LOCATION_CATEGORY[location],
        "hour": np.array([8, 9, 8, 20, 8, 9, 8, 8, 12, 13, 12, 12]),
    }


def make_context(coords: bool = True, categories: bool = True) -> MobilityContext:
    cols = training_columns()
    graphs = {}
    if coords:
        graphs["location"] = radius_graph(COORDS, 0.1)
    location_category = None
    if categories:
        graphs["location_category"], lc = membership_graph(cols["location"], cols["category"], L, C)
        graphs["category"] = cooccurrence_graph(cols["user"], cols["category"], cols["hour"], C)
        location_category = torch.from_numpy(lc)
    return MobilityContext(
        num_users=U,
        num_locations=L,
        num_categories=C if categories else 0,
        location_graphs=graphs,
        coords=torch.from_numpy(COORDS) if coords else None,
        location_category=location_category,
    )


ROWS = [[0, 1, 2, 0, 3, 5], [4, 5, 6, 4], [1, 1, 2]]
QUERIES = [(0, 1), (0, 3), (0, 5), (1, 2), (1, 3), (2, 2)]


def build(name: str, context: MobilityContext | None = None, **extra):
    torch.manual_seed(0)
    model = build_model(name, {**PARAMS.get(name, {}), **extra}, context or make_context())
    return model


def scores(model, inputs, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)  # hgarn-faithful's frozen heads keep attention dropout at eval
    with torch.no_grad():
        return model(inputs).location


def test_graph_context_is_what_hgarn_expects():
    context = make_context()
    assert context.location_graphs["location"].num_edges == 6  # 0, 1, 2 pairwise
    assert context.location_graphs["location_category"].num_nodes == L + C


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name):
    model = build(name).eval()
    out = model(make_inputs(ROWS, QUERIES))
    assert out.location.shape == (len(QUERIES), L)
    assert out.category is not None and out.category.shape == (len(QUERIES), C)
    assert torch.isfinite(out.location).all()


@pytest.mark.parametrize("name", MODELS)
def test_causal_along_each_row(name):
    model = build(name).eval()
    inputs = make_inputs(ROWS, QUERIES)
    before = scores(model, inputs)
    changed = inputs.location.clone()
    changed[0, 2:] = torch.tensor([6, 6, 6, 6])  # after sample 0's query position 1
    altered = dataclasses.replace(
        inputs,
        location=changed,
        category=torch.from_numpy(LOCATION_CATEGORY)[changed],
        hour=inputs.hour.roll(1, dims=1),
        weekday=(inputs.weekday + 1) % 7,
    )
    # only hour/weekday of positions > 1 of row 0 may differ for sample 0: restore the rest
    keep = torch.arange(inputs.location.shape[1]) <= 1
    keep = keep[None] | (torch.arange(3) != 0)[:, None]
    altered = dataclasses.replace(
        altered,
        hour=torch.where(keep, inputs.hour, altered.hour),
        weekday=torch.where(keep, inputs.weekday, altered.weekday),
    )
    after = scores(model, altered)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(after[3:], before[3:], rtol=0, atol=1e-6)  # other rows
    assert not torch.allclose(after[2], before[2])  # sample 2 reads the changed positions


@pytest.mark.parametrize("name", MODELS)
def test_packed_rows_equal_one_row_per_sample(name):
    model = build(name).eval()
    model.fit_train(train_view())
    inputs = make_inputs(ROWS, QUERIES)
    packed = scores(model, inputs)
    # Each sample alone: its own row, cut after its query position (zeros after it).
    row, pos = inputs.query_row, inputs.query_pos
    valid = torch.arange(inputs.location.shape[1]) <= pos[:, None]
    per_step = ("location", "category", "hour", "weekday", "gap_hours")
    single = dataclasses.replace(
        inputs,
        **{k: getattr(inputs, k)[row] * valid for k in per_step},
        user=inputs.user[row],
        lengths=pos + 1,
        query_row=torch.arange(len(row)),
    )
    torch.testing.assert_close(scores(model, single), packed, rtol=1e-5, atol=1e-5)


def train_view() -> CheckinTrainView:
    """Training check-ins: user 0 walks 0 1 2 0 1 3, user 1 walks 1 2 4 4; location 1 is the
    most popular (3 visits). Transitions (within a user): 0->1 twice, 1->2 twice, 2->0, 1->3,
    2->4, 4->4; none from 5 or 6."""
    user = np.array([0] * 6 + [1] * 4)
    location = np.array([0, 1, 2, 0, 1, 3, 1, 2, 4, 4])
    time = np.datetime64("2024-01-01T08:00") + np.arange(10) * np.timedelta64(1, "h")
    log = EventLog(
        user=user,
        time=time.astype("datetime64[s]"),
        location=location,
        users=np.array(["a", "b", "c"], dtype=object),
        locations=np.array([f"v{i}" for i in range(L)], dtype=object),
        category=LOCATION_CATEGORY[location],
        categories=np.array(["food", "work", "home"], dtype=object),
    )
    return CheckinTrainView(log)


def test_hgarn_trains_its_gat_heads():
    model = build("hgarn").train()
    heads = [model.location_gat.conv, model.activity_gat.conv, model.category_gat.conv]
    names = {n for n, _ in model.named_parameters()}
    assert {"location_gat.conv.lin.weight", "category_gat.conv.att_src"} <= names
    before = [h.lin.weight.detach().clone() for h in heads]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs = make_inputs(ROWS, QUERIES)
    out = model(inputs)
    torch.nn.functional.cross_entropy(out.location, torch.tensor([2, 3, 4, 5, 6, 0])).backward()
    for head in heads:
        assert head.lin.weight.grad is not None and head.lin.weight.grad.abs().sum() > 0
        assert head.att_src.grad.abs().sum() > 0
    optimizer.step()
    assert all(not torch.equal(h.lin.weight, b) for h, b in zip(heads, before, strict=True))
    model.eval()
    assert not model.location_gat.conv.training  # eval reaches the heads


def test_faithful_heads_are_frozen_buffers_and_stay_in_training_mode():
    model = build("hgarn-faithful").train()
    conv = model.category_gat.conv
    names = {n for n, _ in model.named_parameters()}
    assert not any(".conv." in n for n in names)
    assert "category_gat.out.weight" in names  # the GAT's output layer trains
    state = model.state_dict()
    assert "category_gat.conv.lin.weight" in state and "category_gat.conv.att_dst" in state
    frozen = {k: v.clone() for k, v in state.items() if ".conv." in k}
    out_before = model.category_gat.out.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(make_inputs(ROWS, QUERIES))
    torch.nn.functional.cross_entropy(out.location, torch.tensor([2, 3, 4, 5, 6, 0])).backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert not torch.equal(model.category_gat.out.weight, out_before)
    # pyGAT init: Xavier uniform with gain 1.414 (bound for W: 1.414 sqrt(6 / (8 + 16))).
    assert float(conv.lin.weight.abs().max()) <= 1.414 * (6 / 24) ** 0.5
    model.eval()
    assert conv.training and not model.category_gat.training
    inputs = make_inputs(ROWS, QUERIES)
    assert not torch.equal(scores(model, inputs, seed=1), scores(model, inputs, seed=2))
    clean = build("hgarn").eval()
    torch.testing.assert_close(scores(clean, inputs, seed=1), scores(clean, inputs, seed=2))


def test_faithful_checkpoint_restores_the_frozen_heads():
    model = build("hgarn-faithful").eval()
    torch.manual_seed(5)  # another init
    fresh = build_model("hgarn-faithful", SMALL, make_context()).eval()
    inputs = make_inputs(ROWS, QUERIES)
    assert not torch.allclose(scores(fresh, inputs), scores(model, inputs))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(scores(fresh, inputs), scores(model, inputs))


def test_faithful_config_derives_from_the_clean_one():
    assert issubclass(HGARNFaithfulConfig, HGARNConfig)
    assert {f.name for f in dataclasses.fields(HGARNFaithfulConfig)} == {
        f.name for f in dataclasses.fields(HGARNConfig)
    }
    faithful, clean = HGARNFaithfulConfig(), HGARNConfig()
    assert faithful.frozen_heads and not clean.frozen_heads
    assert faithful.hidden == clean.hidden == 600


def test_gat_block_without_neighbours_takes_the_mean_of_all_nodes():
    config = HGARNConfig(gat_dropout=0.0, self_loops=False, isolated_uniform=True, gat_bias=False)
    torch.manual_seed(0)
    edges = torch.tensor([[0], [1]])  # 0 -> 1: node 1 attends to node 0 only
    block = GATBlock(5, 4, edges, 3, config).eval()
    x = torch.randn(3, 5)
    wx = block.conv.lin(x)
    want = torch.stack([wx.mean(0), wx[0], wx.mean(0)])
    torch.testing.assert_close(block(x), block.out(torch.nn.functional.elu(want)))


def test_degrades_without_coordinates_or_categories():
    inputs = make_inputs(ROWS, QUERIES)
    no_coords = build("hgarn", make_context(coords=False)).eval()
    assert not hasattr(no_coords, "location_gat")
    assert no_coords(inputs).location.shape == (len(QUERIES), L)
    no_categories = build("hgarn", make_context(categories=False)).eval()
    out = no_categories(dataclasses.replace(inputs, category=torch.zeros_like(inputs.category)))
    assert out.category is None and out.location.shape == (len(QUERIES), L)
    assert not hasattr(no_categories, "category_rnn")


def test_missing_category_graph_is_a_clear_error():
    context = make_context()
    graphs = {k: v for k, v in context.location_graphs.items() if k != "category"}
    broken = dataclasses.replace(context, location_graphs=graphs)
    with pytest.raises(InputError, match="needs the 'category' graph"):
        build_model("hgarn", SMALL, broken)
    with pytest.raises(InputError, match="location_dim and category_dim must be equal"):
        build_model("hgarn", {**SMALL, "category_dim": 4}, context)


@pytest.mark.parametrize("name", ["hgarn", "hgarn-faithful", "gru"])
def test_a_few_steps_reduce_the_loss(name):
    # Every user walks the cycle 0 -> 1 -> 2 -> 3 -> 0: the next location is a function of
    # the current one.
    cycle = [0, 1, 2, 3] * 3
    inputs = make_inputs(
        [cycle, cycle[1:], cycle[2:]], [(r, p) for r in range(3) for p in (4, 6, 8)]
    )
    rows = [cycle, cycle[1:], cycle[2:]]
    target = torch.tensor([rows[r][p + 1] for r in range(3) for p in (4, 6, 8)])
    model = build(name, **({"dropout": 0.0} if name == "gru" else {})).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs).location, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_configs_resolve_from_strings_and_reject_unknown_keys():
    from stgraph.models.base import resolve_model_config

    config = resolve_model_config("hgarn-faithful", {"hidden": "64", "frozen_heads": "false"})
    assert config.hidden == 64 and config.frozen_heads is False and config.self_loops is False
    with pytest.raises(InputError, match="res_factr"):
        resolve_model_config("hgarn", {"res_factr": 0.2})


def test_padded_and_packed_row_encodings_agree_before_each_rows_end():
    from stgraph.nn.sequence import encode_rows

    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 5, batch_first=True)
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    valid = torch.arange(6) < lengths[:, None]
    padded, packed = encode_rows(rnn, x, lengths), encode_rows(rnn, x, lengths, packed=True)
    torch.testing.assert_close(padded[valid], packed[valid])
    assert bool((packed[~valid] == 0).all())
    # Row 1 alone, cut at its length: the same states.
    torch.testing.assert_close(rnn(x[1:2, :2])[0][0], padded[1, :2])
    with pytest.raises(ValueError, match="unidirectional"):
        encode_rows(torch.nn.GRU(3, 5, batch_first=True, bidirectional=True), x, lengths)


def test_history_prior_adds_log_visit_counts_to_the_logits():
    # rows: user 0 visits 1, 1, 4 ...; the sample at position 2 has seen 1 twice and 4 once
    inputs = make_inputs([[1, 1, 4, 2]], [(0, 2)])
    torch.manual_seed(0)
    plain = build_model("hgarn", {**SMALL, "history_prior": 0.0}, make_context()).eval()
    torch.manual_seed(0)
    prior = build_model("hgarn", {**SMALL, "history_prior": 0.5}, make_context()).eval()
    a, b = plain(inputs), prior(inputs)
    visits = torch.zeros(L)
    visits[1], visits[4] = 2.0, 1.0
    torch.testing.assert_close(b.location - a.location, 0.5 * torch.log1p(visits)[None])
    categories = torch.zeros(C)
    categories[LOCATION_CATEGORY[1]] += 2
    categories[LOCATION_CATEGORY[4]] += 1
    torch.testing.assert_close(b.category - a.category, 0.5 * torch.log1p(categories)[None])
    assert HGARNFaithfulConfig().history_prior == 0.0
