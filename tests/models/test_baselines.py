import numpy as np
import pandas as pd
import pytest
import torch

from stgraph.data.windows import split_samples
from stgraph.graphs.graph import Graph
from stgraph.models import build_model
from stgraph.tasks.forecast import ForecastTask
from tests.helpers import make_series


def _setup(series, window=3, horizon=2, ratios=(0.7, 0.1, 0.2)):
    splits = split_samples(series.timestamps, window, horizon, ratios=list(ratios))
    graph = Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), series.num_nodes)
    task = ForecastTask(series, graph, splits, window, horizon)
    return task, task.context


def test_persistence_repeats_last_observed_value():
    values = np.array([[1, 9], [2, 8], [3, 0], [4, 6], [5, 5], [6, 4]] * 4, dtype=np.float32)
    task, context = _setup(make_series(values))
    model = build_model("persistence", {}, context)
    batch = task.batch(np.array([2]))  # inputs steps 0..2; node 1's step 2 is missing
    out = task.predict(model(batch.inputs))
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [3, 3], rtol=1e-6)
    np.testing.assert_allclose(out[0, :, 1, 0].numpy(), [8, 8], rtol=1e-6)  # last observed


@pytest.mark.parametrize("missing", [[6], [5, 6]])
def test_historical_average_by_weekday_and_time_of_day_with_fallback(missing):
    # hourly data, 3 weeks; value = hour + 100 * weekday, so each slot's mean is known
    stamps = pd.date_range("2024-01-01", periods=24 * 21, freq="h")
    values = (stamps.hour + 100 * stamps.dayofweek).to_numpy(np.float32)[:, None] + 1
    unseen = np.isin(stamps.dayofweek, missing) & np.asarray(stamps < "2024-01-15")
    values[unseen] = 0  # missing: these weekdays never occur in training
    series = make_series(values, freq="h")
    task, context = _setup(series, window=2, horizon=3, ratios=(0.6, 0.2, 0.2))
    model = build_model("historical-average", {}, context)
    model.fit_train(task.train_view)

    def at(dow, hour):
        return task.predict(model.table[dow, hour])[0, 0].item()

    assert at(2, 5) == pytest.approx(5 + 200 + 1, rel=1e-5)  # Wednesday 5h: its own mean
    if missing == [6]:
        # Sunday unseen: the mean of that hour over training days of its kind (Saturday)
        assert at(6, 5) == pytest.approx(5 + 500 + 1, rel=1e-5)
    else:
        # No weekend day in training: the mean of that hour over all training days
        for dow in (5, 6):
            assert at(dow, 5) == pytest.approx(5 + 1 + 100 * np.mean([0, 1, 2, 3, 4]), rel=1e-5)


def test_stid_shapes_and_unknown_param():
    task, context = _setup(make_series(np.random.default_rng(0).random((80, 3)) + 1))
    model = build_model("stid", {"hidden": 8, "num_layers": 1}, context)
    assert model(task.batch(np.array([2, 3, 4])).inputs).shape == (3, 2, 3, 1)
    from stgraph.errors import InputError

    with pytest.raises(InputError, match="Unknown config key 'model.params.hiden'"):
        build_model("stid", {"hiden": 8}, context)


@pytest.mark.slow  # a full los-loop pipeline: ~18 s on 2 busy cores
def test_persistence_on_los_loop_matches_an_independent_numpy_computation(shared_data):
    """Default protocol: anchors 11..T-13, last round(0.2 S) samples test, zeros masked."""
    from stgraph.pipeline import prepare, resolve_config
    from stgraph.training.trainer import Trainer

    folder = shared_data / "traffic" / "los-loop"
    config = resolve_config("los-loop", model="persistence", flags={"data.data_dir": str(folder)})
    task = prepare(config)
    model = build_model("persistence", {}, task.context)
    trainer = Trainer(task, model, config.train, folder / "unused", quiet=True)
    ours = trainer.evaluate("test")

    speeds = np.loadtxt(folder / "los_speed.csv", delimiter=",", skiprows=1)
    steps = speeds.shape[0]
    anchors = np.arange(11, steps - 12)
    test = anchors[len(anchors) - round(0.2 * len(anchors)) :]
    expected = {}
    abs_all, sq_all, n_all = 0.0, 0.0, 0
    for h in range(1, 13):
        errors, squares, count = 0.0, 0.0, 0
        for t in test:
            window = speeds[t - 11 : t + 1]
            last = np.array([col[col != 0][-1] if (col != 0).any() else np.nan for col in window.T])
            target = speeds[t + h]
            keep = target != 0
            errors += np.abs(last - target)[keep].sum()
            squares += ((last - target) ** 2)[keep].sum()
            count += keep.sum()
        expected[f"mae@{h}"] = errors / count
        expected[f"rmse@{h}"] = np.sqrt(squares / count)
        abs_all, sq_all, n_all = abs_all + errors, sq_all + squares, n_all + count
    for h in (3, 6, 12):
        assert ours[f"mae@{h}"] == pytest.approx(expected[f"mae@{h}"], abs=1e-4)
        assert ours[f"rmse@{h}"] == pytest.approx(expected[f"rmse@{h}"], abs=1e-4)
    assert ours["mae_avg12"] == pytest.approx(abs_all / n_all, abs=1e-4)
    assert ours["rmse_avg12"] == pytest.approx(np.sqrt(sq_all / n_all), abs=1e-4)
