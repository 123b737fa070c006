import itertools
import math

import pytest
import torch

from stgraph.metrics import RankingMetrics, SplitMetrics

INV_LOG2_3 = 1 / math.log2(3)  # 0.6309..., the NDCG gain at rank 2 is 1/log2(2+1)


def _metrics(scores, target, mask=None, **kwargs):
    m = RankingMetrics(**kwargs)
    m.update(
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(target),
        None if mask is None else torch.tensor(mask),
    )
    return m.compute()


def test_hand_computed_without_ties_and_a_masked_sample():
    scores = [
        [0.1, 0.9, 0.3, 0.5, 0.2],  # target 3 (0.5): only 0.9 is higher -> rank 2
        [0.1, 0.9, 0.3, 0.5, 0.2],  # target 1 (0.9): rank 1
        [0.1, 0.9, 0.3, 0.5, 0.2],  # target 0 (0.1): all 4 others higher -> rank 5
        [0.0, 0.0, 0.0, 0.0, 0.0],  # masked out: would add a sample
    ]
    r = _metrics(scores, [3, 1, 0, 2], [True, True, True, False], ks=(1, 3))
    # ranks 2, 1, 5 over 3 samples
    assert math.isclose(r["acc@1"], 1 / 3)  # only rank 1 <= 1
    assert math.isclose(r["acc@3"], 2 / 3)  # ranks 2 and 1 <= 3
    assert math.isclose(r["ndcg@1"], 1 / 3)  # 1/log2(2) = 1 for rank 1, 0 otherwise
    assert math.isclose(r["ndcg@3"], (INV_LOG2_3 + 1 + 0) / 3)  # (0.6309 + 1) / 3 = 0.5436
    assert math.isclose(r["mrr"], (1 / 2 + 1 + 1 / 5) / 3)  # 1.7 / 3 = 0.5667
    assert list(r) == ["acc@1", "acc@3", "ndcg@1", "ndcg@3", "mrr"]


def test_ties_pessimistic_by_default_and_expected_on_request():
    # target 0 scores 3; no location is higher (g = 0), locations 2 and 3 tie with it (t = 2)
    scores, target = [[3.0, 1.0, 3.0, 3.0, 0.0]], [0]
    pessimistic = _metrics(scores, target, ks=(1, 2, 5))
    # rank 1 + g + t = 3: outside top 1 and top 2; ndcg@5 = 1/log2(4) = 0.5; rr = 1/3
    assert pessimistic == {
        "acc@1": 0.0,
        "acc@2": 0.0,
        "acc@5": 1.0,
        "ndcg@1": 0.0,
        "ndcg@2": 0.0,
        "ndcg@5": 0.5,
        "mrr": pytest.approx(1 / 3),
    }
    expected = _metrics(scores, target, ks=(1, 2, 5), ties="expected")
    # ranks 1, 2, 3 with probability 1/3 each
    assert math.isclose(expected["acc@1"], 1 / 3)  # only rank 1
    assert math.isclose(expected["acc@2"], 2 / 3)  # ranks 1, 2
    assert expected["acc@5"] == 1.0
    assert math.isclose(expected["ndcg@1"], 1 / 3)  # (1 + 0 + 0) / 3
    assert math.isclose(expected["ndcg@2"], (1 + INV_LOG2_3) / 3)  # 0.5436
    assert math.isclose(expected["ndcg@5"], (1 + INV_LOG2_3 + 0.5) / 3)  # 0.7103
    assert math.isclose(expected["mrr"], (1 + 1 / 2 + 1 / 3) / 3)  # 11/18 = 0.6111


def test_constant_scores_get_no_credit_or_exactly_chance():
    scores, target = [[0.0, 0.0, 0.0, 0.0]] * 2, [0, 3]  # every location ties (t = 3)
    pessimistic = _metrics(scores, target, ks=(1, 2))
    assert pessimistic["acc@1"] == 0.0 and pessimistic["acc@2"] == 0.0  # rank 4 each
    assert pessimistic["mrr"] == 0.25
    expected = _metrics(scores, target, ks=(1, 2), ties="expected")
    assert expected["acc@1"] == 0.25 and expected["acc@2"] == 0.5  # k / L
    assert math.isclose(expected["mrr"], (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)  # 25/48


def test_nan_scores_rank_last():
    # target 0 has a NaN score (-inf): 2 and 1 are higher -> rank 3, rr = 1/3;
    # target 1 (score 1): only 2 is higher, the NaN is below it -> rank 2, rr = 1/2
    r = _metrics([[math.nan, 1.0, 2.0], [math.nan, 1.0, 2.0]], [0, 1], ks=(1,))
    assert math.isclose(r["mrr"], (1 / 3 + 1 / 2) / 2)


def test_all_masked_batch_contributes_nothing():
    m = RankingMetrics(ks=(1,))
    m.update(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.bool))
    assert all(math.isnan(v) for v in m.compute().values())  # not a perfect 0 or 1
    m.update(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))  # rank 1
    assert m.compute() == {"acc@1": 1.0, "ndcg@1": 1.0, "mrr": 1.0}


def test_state_all_reduce_equals_one_pass_and_k_beyond_l():
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (40, 6)).float()  # many ties
    target = torch.randint(0, 6, (40,))
    for ties in ("pessimistic", "expected"):
        whole = RankingMetrics(ks=(1, 3, 10), ties=ties)
        whole.update(scores, target)
        a, b = RankingMetrics(ks=(1, 3, 10), ties=ties), RankingMetrics(ks=(1, 3, 10), ties=ties)
        a.update(scores[:15], target[:15])
        b.update(scores[15:], target[15:])
        union = RankingMetrics(ks=(1, 3, 10), ties=ties)
        union.load_state(a.state() + b.state())
        assert union.compute() == pytest.approx(whole.compute())
        assert whole.compute()["acc@10"] == 1.0  # k = 10 > L = 6: every rank is within it


def test_matches_enumerating_every_tie_order():
    # reference: break ties every possible way, rank the target, average the metrics
    torch.manual_seed(1)
    scores = torch.randint(0, 3, (12, 5)).float()
    target = torch.randint(0, 5, (12,))
    ks = (1, 2, 4)
    expected = RankingMetrics(ks=ks, ties="expected")
    expected.update(scores, target)
    pessimistic = RankingMetrics(ks=ks)
    pessimistic.update(scores, target)
    sums_expected = {f"{m}@{k}": 0.0 for m in ("acc", "ndcg") for k in ks} | {"mrr": 0.0}
    sums_pessimistic = dict(sums_expected)
    for row, t in zip(scores.tolist(), target.tolist()):
        orders = list(itertools.permutations(range(5)))  # order = tie-break priority
        ranks = []
        for order in orders:
            ranked = sorted(range(5), key=lambda i: (-row[i], order.index(i)))
            ranks.append(ranked.index(t) + 1)
        for sums, rank_list in ((sums_expected, ranks), (sums_pessimistic, [max(ranks)])):
            for rank in rank_list:
                w = 1 / len(rank_list)
                for k in ks:
                    sums[f"acc@{k}"] += w * (rank <= k)
                    sums[f"ndcg@{k}"] += w * (rank <= k) / math.log2(1 + rank)
                sums["mrr"] += w / rank
    assert expected.compute() == pytest.approx({k: v / 12 for k, v in sums_expected.items()})
    assert pessimistic.compute() == pytest.approx({k: v / 12 for k, v in sums_pessimistic.items()})


def test_bad_arguments_are_rejected_and_the_interface_holds():
    with pytest.raises(ValueError, match="ks"):
        RankingMetrics(ks=(0, 5))
    with pytest.raises(ValueError, match="ties"):
        RankingMetrics(ties="optimistic")
    m = RankingMetrics()
    assert isinstance(m, SplitMetrics)
    with pytest.raises(ValueError, match="target indices"):
        m.update(torch.zeros(1, 3), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        m.update(torch.zeros(3), torch.tensor([0]))
