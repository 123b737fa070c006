import math

import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.errors import InputError
from stgraph.metrics import (
    BacktestResult,
    annual_return,
    max_drawdown,
    sharpe_ratio,
    topk_backtest,
)

NAN = math.nan

# 4 trade dates x 5 stocks, everything tradable. Row d of RETURNS is earned by the trade of row d.
SCORES = np.array(
    [
        [5, 4, 3, 2, 1],  # top 2: s0, s1
        [1, 5, 4, 3, 2],  # s1, s2
        [4, 3, 2, 1, 5],  # s4, s0
        [1, 2, 3, 4, 5],  # s4, s3
    ],
    dtype=float,
)
RETURNS = np.array(
    [
        [0.10, -0.05, 0.02, 0.00, 0.01],
        [0.00, 0.04, -0.02, 0.03, 0.05],
        [-0.10, 0.02, 0.00, 0.01, 0.10],
        [0.02, 0.00, 0.01, -0.04, 0.03],
    ]
)
ALL = np.ones_like(SCORES, dtype=bool)
# Universe = the mean of each row: .08/5, .10/5, .03/5, .02/5
UNIVERSE = [0.016, 0.02, 0.006, 0.004]

# Plain top-2, daily, by hand (weights as fractions of the value):
# d0: buy s0, s1 at .5 from cash: sum|dw| = 1 (one-way .5); gross = .5*.10 + .5*-.05 = .025.
#     Drift: s0 = .55/1.025, s1 = .475/1.025.
# d1: to s1, s2 at .5: sum|dw| = .55/1.025 + (.5 - .475/1.025) + .5 = 1 + .075/1.025 = 1.1/1.025;
#     gross = .5*.04 + .5*-.02 = .01. Drift: s1 = .52/1.01, s2 = .49/1.01.
# d2: to s4, s0: sells both (1.01/1.01 = 1) and buys 1: sum|dw| = 2 (one-way 1); gross = 0.
#     Drift: s0 = .45, s4 = .55.
# d3: to s4, s3: sell s0 .45, buy s3 .5, trim s4 .05: sum|dw| = 1; gross = .5*-.04 + .5*.03.
PLAIN_GROSS = [0.025, 0.01, 0.0, -0.005]
PLAIN_TRADED = [1.0, 1.1 / 1.025, 2.0, 1.0]  # sum |dw|; turnover is half of it


def test_plain_top_k_without_fees_by_hand():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2)
    assert r.gross == pytest.approx(PLAIN_GROSS, abs=1e-12)
    assert r.net == pytest.approx(PLAIN_GROSS, abs=1e-12)
    assert r.turnover == pytest.approx([t / 2 for t in PLAIN_TRADED], abs=1e-12)
    assert r.cost == pytest.approx([0, 0, 0, 0], abs=0)
    assert r.universe == pytest.approx(UNIVERSE, abs=1e-12)
    assert list(r.n_held) == [2, 2, 2, 2]
    assert r.nav_net == pytest.approx(np.cumprod(1 + np.array(PLAIN_GROSS)), abs=1e-12)
    assert r.nav_universe[-1] == pytest.approx(1.016 * 1.02 * 1.006 * 1.004, abs=1e-12)
    assert r.days == 4 and isinstance(r, BacktestResult)
    with pytest.raises(ValueError):
        r.net[0] = 1.0  # the series are read-only


def test_plain_top_k_with_fee_charges_both_sides_and_the_buy_in():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2, fee=0.001)
    # cost = .001 * sum|dw| = .001, .0010732, .002, .001
    cost = [0.001, 0.001 * 1.1 / 1.025, 0.002, 0.001]
    assert r.cost == pytest.approx(cost, abs=1e-15)
    assert r.gross == pytest.approx(PLAIN_GROSS, abs=1e-12)  # fees do not move the weights
    assert r.net == pytest.approx([0.024, 0.01 - 0.001 * 1.1 / 1.025, -0.002, -0.006], abs=1e-12)
    assert r.cost == pytest.approx(2 * 0.001 * r.turnover, abs=1e-15)


def test_summary_against_hand_numbers():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2, fee=0.001)
    s = r.summary()
    net = np.array([0.024, 0.01 - 0.001 * 1.1 / 1.025, -0.002, -0.006])
    # annualised: (prod(1 + r)) ** (252 / 4) - 1
    assert s["annual_return_gross"] == pytest.approx(
        (1.025 * 1.01 * 1.0 * 0.995) ** 63 - 1, rel=1e-10
    )
    assert s["annual_return_net"] == pytest.approx(np.prod(1 + net) ** 63 - 1, rel=1e-10)
    assert s["total_return_net"] == pytest.approx(np.prod(1 + net) - 1, rel=1e-12)
    # Sharpe: mean 0.0059817, sample std (ddof 1) of the four net returns, times sqrt(252)
    mean = net.mean()
    std = math.sqrt(((net - mean) ** 2).sum() / 3)
    assert s["sharpe_net"] == pytest.approx(mean / std * math.sqrt(252), rel=1e-10)
    # NAV 1.024, 1.0331, 1.0311, 1.0249: the peak after d1, then -.2% and -.6% on it
    assert s["max_drawdown_net"] == pytest.approx(0.998 * 0.994 - 1, rel=1e-10)
    # one-way turnover: mean of .5, .53659, 1, .5
    assert s["turnover"] == pytest.approx((0.5 + 0.55 / 1.025 + 1.0 + 0.5) / 4, rel=1e-12)
    universe = np.array(UNIVERSE)
    assert s["annual_return_universe"] == pytest.approx(np.prod(1 + universe) ** 63 - 1)
    u_mean, u_std = universe.mean(), universe.std(ddof=1)
    assert s["sharpe_universe"] == pytest.approx(u_mean / u_std * math.sqrt(252), rel=1e-10)
    assert s["max_drawdown_universe"] == 0.0  # the universe never fell
    assert s["excess_annual_return_net"] == pytest.approx(
        s["annual_return_net"] - s["annual_return_universe"], rel=1e-12
    )
    assert s["days"] == 4


def test_rebalance_every_two_days_lets_weights_drift():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2, rebalance=2, fee=0.001)
    # d0 as in the daily case. d1: no trade; s0 = .55/1.025 earns 0, s1 = .475/1.025 earns .04:
    #     gross = .019/1.025. Drift: s0 = .55/1.044, s1 = .494/1.044.
    # d2: to s4, s0: |.5 - .55/1.044| + .494/1.044 + .5 = (.028 + .494)/1.044 + .5 = 1;
    #     gross = .5*-.10 + .5*.10 = 0. Drift: s0 = .45, s4 = .55.
    # d3: no trade; gross = .45*.02 + .55*.03 = .0255.
    assert r.gross == pytest.approx([0.025, 0.019 / 1.025, 0.0, 0.0255], abs=1e-12)
    assert r.turnover == pytest.approx([0.5, 0.0, 0.5, 0.0], abs=1e-12)
    assert r.cost == pytest.approx([0.001, 0.0, 0.001, 0.0], abs=1e-15)
    assert r.net == pytest.approx([0.024, 0.019 / 1.025, -0.001, 0.0255], abs=1e-12)


def test_topk_dropout_sells_at_most_n_drop_and_keeps_weights():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2, n_drop=1)
    # d0: empty, so fill both slots: s0, s1 at .5 (as plain). Drift: s0 .55/1.025, s1 .475/1.025.
    # d1: held s0 (score 1), s1 (5); best not held: s2 (4) > s0 -> swap s0 for s2, which gets the
    #     freed .55/1.025; s1 keeps .475/1.025. sum|dw| = 1.1/1.025.
    #     gross = (.475*.04 + .55*-.02)/1.025 = .008/1.025. Drift: s1 .494/1.033, s2 .539/1.033.
    # d2: held s1 (3), s2 (2); plain top-2 would sell both (s4, s0), dropout only the worst s2
    #     for s4 (5): s4 gets .539/1.033, sum|dw| = 1.078/1.033.
    #     gross = (.494*.02 + .539*.10)/1.033 = .06378/1.033. Drift: s1 .50388/1.09678,
    #     s4 .5929/1.09678.
    # d3: held s1 (2), s4 (5); best not held s3 (4) > s1: swap, s3 gets .50388/1.09678.
    #     gross = (.50388*-.04 + .5929*.03)/1.09678.
    gross = [0.025, 0.008 / 1.025, 0.06378 / 1.033, (-0.0201552 + 0.017787) / 1.09678]
    assert r.gross == pytest.approx(gross, abs=1e-12)
    assert r.turnover == pytest.approx(
        [0.5, 0.55 / 1.025, 0.539 / 1.033, 0.50388 / 1.09678], abs=1e-12
    )
    assert list(r.n_held) == [2, 2, 2, 2]


def test_topk_dropout_keeps_holdings_that_no_candidate_beats():
    scores = np.array([[5, 4, 3, 2], [5, 4, 3, 2], [1, 4, 3, 2]], dtype=float)
    returns = np.zeros((3, 4))
    r = topk_backtest(scores, returns, np.ones((3, 4), bool), k=2, n_drop=2, fee=0.01)
    # d1: s0, s1 still the best: no trade. d2: s0 falls to 1 < s2 (3): sell s0 only (s1 at 4
    # beats s3 at 2), one-way .5.
    assert r.turnover == pytest.approx([0.5, 0.0, 0.5])
    assert r.cost == pytest.approx([0.01, 0.0, 0.01])


# A held stock suspended on d1: 3 dates x 4 stocks, k = 2.
SUSPENDED_SCORES = np.array([[4, 3, 2, 1], [NAN, 1, 3, 2], [0, 5, 4, 1]], dtype=float)
SUSPENDED_RETURNS = np.array([[0.10, 0, 0, 0], [NAN, 0.02, 0.04, -0.01], [0, 0.01, 0.03, 0]])
SUSPENDED_MASK = np.array([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=bool)


def test_a_masked_holding_is_stuck_earns_zero_and_keeps_its_slot():
    r = topk_backtest(SUSPENDED_SCORES, SUSPENDED_RETURNS, SUSPENDED_MASK, k=2)
    # d0: s0, s1 at .5; gross .05. Drift: s0 = 11/21, s1 = 10/21.
    # d1: s0 masked: kept at 11/21, earns 0 (its NaN return is ignored). One slot left: the best
    #     buyable is s2 (3): sell s1 (10/21), buy s2 with 10/21: one-way 10/21.
    #     gross = 10/21 * .04 = .4/21. Drift: s0 = 11/21.4, s2 = 10.4/21.4.
    # d2: s0 tradable again, not in the top 2 (s1, s2): sell 11/21.4, buy s1 .5, top s2 up to .5:
    #     sum|dw| = 11/21.4 + .5 + (.5 - 10.4/21.4) = 22/21.4; gross = .5*.01 + .5*.03 = .02.
    assert r.gross == pytest.approx([0.05, 0.4 / 21, 0.02], abs=1e-12)
    assert r.turnover == pytest.approx([0.5, 10 / 21, 11 / 21.4], abs=1e-12)
    assert list(r.n_held) == [2, 2, 2]
    # Universe on d1: the mean over the three tradable stocks, (.02 + .04 - .01)/3
    assert r.universe == pytest.approx([0.025, 0.05 / 3, 0.01], abs=1e-12)


def test_topk_dropout_does_not_sell_a_stuck_holding_nor_reweight_kept_ones():
    r = topk_backtest(SUSPENDED_SCORES, SUSPENDED_RETURNS, SUSPENDED_MASK, k=2, n_drop=1)
    # d1: s0 stuck; the only sellable holding s1 (1) loses to s2 (3): as the plain case.
    # d2: held s0 (0, tradable again) and s2 (4); s1 (5) beats s0: swap. s1 gets s0's
    #     11/21.4; s2 keeps 10.4/21.4 (not topped up): gross = (11*.01 + 10.4*.03)/21.4.
    assert r.gross == pytest.approx([0.05, 0.4 / 21, 0.422 / 21.4], abs=1e-12)
    assert r.turnover == pytest.approx([0.5, 10 / 21, 11 / 21.4], abs=1e-12)


def test_too_few_buyable_stocks_hold_fewer_and_an_empty_day_stays_in_cash():
    scores = np.array([[3, 2, 1], [3, NAN, NAN], [1, 2, 3], [1, 2, 3]], dtype=float)
    returns = np.array([[0.1, 0.1, 0.0], [0.02, 0.5, 0.5], [0.3, 0.3, 0.3], [0.0, 0.01, 0.03]])
    mask = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=bool)
    r = topk_backtest(scores, returns, mask, k=2)
    # d0: s0, s1 at .5, both earn .1 (no drift). d1: s1 is stuck (masked; its .5 return is not
    # earned), s2 unbuyable: s0 keeps the one free slot at 1 - .5 = .5: no trade, gross .01.
    # d2: everything masked: both holdings stuck, nothing trades, nothing earns; universe 0.
    # d3: to s2, s1 at .5: gross .5*.03 + .5*.01 = .02.
    assert list(r.n_held) == [2, 2, 2, 2]
    assert r.gross == pytest.approx([0.1, 0.01, 0.0, 0.02], abs=1e-12)
    assert r.turnover[1:3] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert r.universe == pytest.approx([0.2 / 3, 0.02, 0.0, 0.04 / 3], abs=1e-12)
    # One buyable stock on a day with two free slots: it takes the whole value.
    one = topk_backtest(
        np.array([[1.0, 2.0], [1.0, NAN]]), np.array([[0.0, 0.0], [0.05, 0.0]]), ALL[:2, :2], k=2
    )
    # d1: s1 has no score: sold; s0 the only buyable: 100% in s0.
    assert one.gross == pytest.approx([0.0, 0.05]) and list(one.n_held) == [2, 1]


def test_plain_top_k_matches_the_mean_return_of_the_daily_top_k():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 30))
    returns = rng.normal(0, 0.02, size=(40, 30))
    r = topk_backtest(scores, returns, np.ones((40, 30), bool), k=5, fee=0.002)
    top = np.argsort(-scores, axis=1)[:, :5]
    assert r.gross == pytest.approx(np.take_along_axis(returns, top, 1).mean(1), abs=1e-12)
    assert r.universe == pytest.approx(returns.mean(1), abs=1e-12)
    assert r.net == pytest.approx(r.gross - 2 * 0.002 * r.turnover, abs=1e-12)
    assert (r.turnover <= 1 + 1e-12).all() and r.turnover[0] == pytest.approx(0.5)
    # torch tensors are accepted as they are
    mask = torch.ones(40, 30, dtype=torch.bool)
    t = topk_backtest(torch.from_numpy(scores), torch.from_numpy(returns), mask, k=5, fee=0.002)
    assert np.array_equal(t.net, r.net)


def test_helpers_against_hand_numbers_and_nan_where_undefined():
    # mean .005; deviations .005, -.015, .015, -.005: sample var 5e-4/3
    r = np.array([0.01, -0.01, 0.02, 0.0])
    assert sharpe_ratio(r) == pytest.approx(0.005 / math.sqrt(5e-4 / 3) * math.sqrt(252))
    assert sharpe_ratio(r, periods_per_year=12) == pytest.approx(
        0.005 / math.sqrt(5e-4 / 3) * math.sqrt(12)
    )
    # NAV 1.1, .88, .924, .8316, 1.08108: the peak 1.1 falls to .8316, -24.4%
    assert max_drawdown(np.array([0.10, -0.20, 0.05, -0.10, 0.30])) == pytest.approx(-0.244)
    assert max_drawdown(np.array([-0.10, 0.05])) == pytest.approx(-0.10)  # from the start at 1
    assert annual_return(np.array([0.01, 0.02]), 252) == pytest.approx(1.0302**126 - 1)
    assert annual_return(np.array([-1.0, 0.5])) == -1.0
    assert math.isnan(sharpe_ratio(np.array([0.01])))  # one day: no std
    assert math.isnan(sharpe_ratio(np.full(10, 0.001)))  # constant: std 0
    assert math.isnan(sharpe_ratio(np.zeros(5)))
    assert math.isnan(annual_return(np.array([]))) and math.isnan(max_drawdown(np.array([])))
    one = topk_backtest(SCORES[:1], RETURNS[:1], ALL[:1], k=2).summary()
    assert math.isnan(one["sharpe_net"]) and math.isnan(one["sharpe_universe"])
    assert one["days"] == 1 and one["annual_return_net"] == pytest.approx(1.025**252 - 1)


def test_frame_is_indexed_by_date_with_the_report_columns():
    r = topk_backtest(SCORES, RETURNS, ALL, k=2, fee=0.001)
    dates = pd.date_range("2024-01-02", periods=4, freq="B")
    f = r.frame(dates)
    assert list(f.columns) == ["gross", "net", "universe", "turnover", "nav_net", "nav_universe"]
    assert f.index.equals(pd.DatetimeIndex(dates, name="date"))
    assert f["nav_net"].iloc[-1] == pytest.approx(r.nav_net[-1])
    assert f["turnover"].tolist() == pytest.approx(r.turnover.tolist())
    with pytest.raises(InputError, match="3 dates for 4"):
        r.frame(dates[:3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"k": 2.0}, "k must be an integer"),
        ({"k": 6}, "k=6 exceeds the universe: only 5 of its 5"),
        ({"k": 2, "rebalance": 0}, "rebalance must be an integer >= 1"),
        ({"k": 2, "fee": -0.001}, "fee must be a finite number >= 0"),
        ({"k": 2, "fee": NAN}, "fee must be"),
        ({"k": 2, "n_drop": 3}, r"n_drop must be None or an integer in \[0, k=2\]"),
        ({"k": 2, "periods_per_year": 0}, "periods_per_year"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(InputError, match=match):
        topk_backtest(SCORES, RETURNS, ALL, **kwargs)


def test_bad_tables_are_rejected():
    with pytest.raises(InputError, match="one shape"):
        topk_backtest(SCORES, RETURNS[:, :4], ALL, k=2)
    with pytest.raises(InputError, match=r"\[D, N\]"):
        topk_backtest(SCORES[0], RETURNS[0], ALL[0], k=2)
    with pytest.raises(InputError, match="mask must be boolean"):
        topk_backtest(SCORES, RETURNS, ALL.astype(float), k=2)
    with pytest.raises(InputError, match="no dates"):
        topk_backtest(SCORES[:0], RETURNS[:0], ALL[:0], k=2)
    bad = RETURNS.copy()
    bad[1, 2] = NAN
    with pytest.raises(InputError, match="finite and >= -1 wherever mask"):
        topk_backtest(SCORES, bad, ALL, k=2)
    bad[1, 2] = -1.5
    with pytest.raises(InputError, match="finite and >= -1"):
        topk_backtest(SCORES, bad, ALL, k=2)
    # The universe counts the stocks buyable on some date: s4 never is, so k = 5 is too many.
    mask = ALL.copy()
    mask[:, 4] = False
    with pytest.raises(InputError, match="k=5 exceeds the universe: only 4 of its 5"):
        topk_backtest(SCORES, RETURNS, mask, k=5)
