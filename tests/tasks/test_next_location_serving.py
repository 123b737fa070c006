"""The next-location task's edges: building from a data config (check-in readers and graph
builders stubbed), the report, and the served predictor."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import stgraph.data.checkins as checkins
from stgraph.data.config import DataConfig
from stgraph.errors import InputError
from stgraph.graphs.graph import Graph
from stgraph.tasks.next_location import (
    NextLocationConfig,
    NextLocationOutput,
    NextLocationPredictor,
    NextLocationTask,
)
from tests.tasks.test_next_location import constant_output, toy_log, toy_sessions, toy_task


@dataclass
class StubCheckinConfig:
    min_user_records: int = 10
    clock: str = "local"


def _membership(location, category, num_locations, num_categories):
    pairs = np.unique(np.stack([location, category]), axis=1)
    edges = torch.from_numpy(pairs + np.array([[0], [num_locations]]))
    result = torch.full((num_locations,), -1)
    result[edges[0]] = edges[1] - num_locations
    return Graph(edges, torch.ones(edges.shape[1]), num_locations + num_categories), result


@pytest.fixture
def stubs(monkeypatch):
    """Stand-ins for the check-in readers and the mobility graph builders; records calls."""
    calls: dict = {}

    def open_checkins(spec, data_dir=None, download=False):
        calls["open"] = (spec, data_dir, download)
        return toy_log()

    def make_sessions(log, config):
        calls["checkins"] = config
        return toy_sessions()

    def radius_graph(coords, radius_km):
        calls["radius"] = (coords.shape, radius_km)
        return Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), len(coords))

    def membership_graph(location, category, num_locations, num_categories):
        calls["membership"] = location.copy()
        return _membership(location, category, num_locations, num_categories)

    def cooccurrence_graph(user, category, hour, num_categories, slot_hours=2):
        calls["cooccurrence"] = (hour.copy(), slot_hours)
        return Graph(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), num_categories)

    for name, value in (
        ("CheckinConfig", StubCheckinConfig),
        ("open_checkins", open_checkins),
        ("make_sessions", make_sessions),
    ):
        monkeypatch.setattr(checkins, name, value, raising=False)
    module = types.ModuleType("stgraph.graphs.mobility")
    module.radius_graph = radius_graph
    module.membership_graph = membership_graph
    module.cooccurrence_graph = cooccurrence_graph
    monkeypatch.setitem(sys.modules, "stgraph.graphs.mobility", module)
    return calls


def test_build_reads_the_data_and_builds_graphs_from_training_check_ins_only(stubs):
    config = NextLocationConfig(checkins={"min_user_records": 3}, radius_km=0.5, slot_hours=3)
    task = NextLocationTask.build(DataConfig(dataset="toy", data_dir="/d"), config)
    assert stubs["open"] == ("toy", "/d", False)
    assert stubs["checkins"] == StubCheckinConfig(min_user_records=3)
    # history and train sessions: u0 events 0-5, u1 10-12, u2 17-23 (16 check-ins)
    train_events = [*range(0, 6), *range(10, 13), *range(17, 24)]
    assert stubs["membership"].tolist() == toy_log().location[train_events].tolist()
    hours, slot = stubs["cooccurrence"]
    assert slot == 3 and len(hours) == 16 and hours[:6].tolist() == [8, 9, 8, 12, 8, 10]
    assert stubs["radius"] == ((5, 2), 0.5)
    context = task.context
    assert set(context.graphs) == {"location", "location_category", "category"}
    assert context.location_category.tolist() == [0, 1, 2, 0, -1]  # e is never in training
    assert (context.num_users, context.num_locations, context.num_categories) == (3, 5, 3)
    assert task.dataset_name == "toy" and task.monitor == "mrr"


def test_build_names_an_unknown_checkin_setting(stubs):
    config = NextLocationConfig(checkins={"min_user_record": 3})
    with pytest.raises(InputError, match="task.params.checkins.min_user_record"):
        NextLocationTask.build(DataConfig(dataset="toy"), config)
    assert "open" not in stubs  # before any data is read
    with pytest.raises(InputError, match="data.split does not apply .* task.params.checkins"):
        NextLocationTask.build(DataConfig(dataset="toy", split={"ratios": [0.8, 0.2]}), config)


# ---------------------------------------------------------------------- report
def test_report_figures_and_prediction_table():
    task = toy_task()
    metrics, predictions = task.new_metrics(), []
    for batch in task.batches("test", 10):
        prediction = task.predict(constant_output(batch), batch, "test")
        task.update_metrics(metrics, prediction, batch)
        predictions.append(prediction)
    report = task.report("test", metrics, predictions, "tiny")

    by_k = report.figures["plots/test_acc_by_k.png"].axes[0]
    assert by_k.get_title() == "Acc@k by k: tiny on toy, test split"
    everything = by_k.lines[0]  # ranks: a miss, 1 and 4
    assert everything.get_label() == "all (n=3)"
    assert everything.get_ydata()[:5].tolist() == pytest.approx([1 / 3] * 3 + [2 / 3] * 2)
    assert len(everything.get_xdata()) == 20
    by_history = report.figures["plots/test_accuracy_by_history.png"].axes[0]
    assert by_history.get_title() == "Accuracy by history length: tiny on toy, test split"
    labels = [t.get_text() for t in by_history.get_xticklabels()]
    assert labels == ["4-7\n(n=1)", "8-15\n(n=2)"]  # histories 6 (u1), 9 (u0) and 8 (u2)
    acc1, acc10 = by_history.lines
    assert acc1.get_ydata().tolist() == [0.0, 0.5] and acc10.get_ydata().tolist() == [1.0, 0.5]

    table = report.tables["predictions/test_predictions.parquet"]
    assert len(table) == 3 * 4  # top 10 of the 4 locations seen in training ("e" is test-only)
    first = table.groupby("user", sort=False).first()
    assert first.index.tolist() == ["u0", "u2", "u1"]
    assert first["target"].tolist() == ["e", "a", "d"]
    assert math.isnan(first.loc["u0", "target_rank"])
    assert first.loc["u2", "target_rank"] == 1 and first.loc["u1", "target_rank"] == 4
    assert first.loc["u0", "time"] == pd.Timestamp("2024-01-05 18:00")
    assert first.loc["u0", "as_of"] == pd.Timestamp("2024-01-05 08:00")
    assert table["location"].tolist()[:4] == ["a", "b", "c", "d"]
    assert table["score"].tolist()[:4] == pytest.approx([0.5, 0.4, 0.3, 0.2])
    assert table["rank"].tolist()[:4] == [1, 2, 3, 4]

    steps = report.tables["data/preprocessing.parquet"].set_index("step")
    sessions = task.sessions
    for name, code in (("train", 0), ("val", 1), ("test", 2)):
        assert steps.loc[f"{name} sessions", "sessions"] == (sessions.split == code).sum()


# ---------------------------------------------------------------------- serving
class NextOne(nn.Module):
    """Scores location ``last + 1`` (mod 5) highest, then ``last + 2``...; records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, inputs):
        self.seen.append(inputs)
        last = inputs.location[inputs.query_row, inputs.query_pos]
        distance = (torch.arange(5)[None, :] - last[:, None] - 1) % 5
        return NextLocationOutput(-distance.float(), None)


CHECKINS = """user,timestamp,location
u0,2024-02-01 08:00,a
u0,2024-02-01 09:00,c
u0,2024-02-01 10:00,zzz
u1,2024-02-01 07:00,b
stranger,2024-02-01 07:00,a
"""


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "recent.csv"
    path.write_text(CHECKINS)
    model = NextOne()
    predictor = NextLocationPredictor(toy_task().export(), model)
    return predictor, predictor.read_input(path, None, None), model, path


def test_predictor_ranks_each_users_next_location(served):
    predictor, data, model, _ = served
    assert predictor.describe_input(data, None)["metrics"] == {
        "input_rows": 5,
        "input_users": 2,
        "unknown_user_rows": 1,
        "unknown_location_rows": 1,
    }
    assert predictor.rows_per_prediction == 2 * 4  # "e" is never in training: never served
    table = predictor.predict(data)
    assert list(table.columns) == ["as_of", "user", "horizon", "rank", "location", "score"]
    top = table[table["rank"] == 1].set_index("user")
    assert top["location"].to_dict() == {"u0": "d", "u1": "c"}  # after c and after b
    assert top["as_of"].to_dict() == {
        "u0": pd.Timestamp("2024-02-01 09:00"),
        "u1": pd.Timestamp("2024-02-01 07:00"),
    }
    assert (table["horizon"] == 1).all()
    assert table[table["user"] == "u0"]["location"].tolist() == ["d", "a", "b", "c"]
    inputs = model.seen[-1]
    assert inputs.location.tolist() == [[0, 2], [1, 0]] and inputs.lengths.tolist() == [2, 1]
    assert inputs.hour[0].tolist() == [8, 9] and inputs.gap_hours[0].tolist() == [0.0, 1.0]
    assert inputs.weekday[0].tolist() == [3, 3]  # 2024-02-01: a Thursday
    earlier = predictor.predict(data, as_of="2024-02-01 08:30")
    assert earlier[earlier["rank"] == 1]["location"].tolist() == ["b", "c"]
    assert predictor.last_time(data) == pd.Timestamp("2024-02-01 10:00")


def test_realised_errors_score_the_top_location_against_the_next_check_in(served):
    predictor, data, _, path = served
    predictions = predictor.predict(data)
    later = pd.read_csv(path)
    later.loc[len(later)] = ["u1", "2024-02-01 12:00", "c"]
    errors = predictor.realised_errors(predictions, predictor.checkins(later, "later", ""))
    # u1 (as of 07:00) next went to c: a hit; u0 (as of 09:00) next went to zzz: a miss
    assert errors.to_dict("list") == {
        "as_of": [pd.Timestamp("2024-02-01 07:00"), pd.Timestamp("2024-02-01 09:00")],
        "horizon": [1, 1],
        "error": [0.0, 1.0],
    }
    # without a later check-in a prediction is not scored yet
    assert predictor.realised_errors(predictions, data)["error"].tolist() == [1.0]


def test_predict_frame_takes_a_request_table(served):
    predictor = served[0]
    request = pd.DataFrame(
        {"user": ["u2"], "timestamp": ["2024-03-01T10:00:00+01:00"], "location": ["d"]}
    )
    table = predictor.predict_frame(request)
    assert table["location"].tolist()[0] == "a"  # "e" would come first but was never trained on
    assert table["as_of"].tolist()[0] == pd.Timestamp("2024-03-01 10:00")  # local wall time


def test_bad_input_is_named(tmp_path, served):
    predictor = served[0]
    missing = tmp_path / "missing.csv"
    missing.write_text("user,location\nu0,a\n")
    with pytest.raises(InputError, match=r"missing.csv: missing column\(s\) \['timestamp'\]"):
        predictor.read_input(missing, None, None)
    garbled = tmp_path / "garbled.csv"
    garbled.write_text("user,timestamp,location\nu0,yesterday-ish,a\n")
    with pytest.raises(InputError, match="garbled.csv: column timestamp does not parse"):
        predictor.read_input(garbled, None, None)
    strangers = tmp_path / "strangers.csv"
    strangers.write_text("user,timestamp,location\nnobody,2024-01-01,a\n")
    with pytest.raises(InputError, match="none of the 1 rows is of a user the model"):
        predictor.read_input(strangers, None, None)
    with pytest.raises(InputError, match="--input FILE or --dataset NAME"):
        predictor.read_input(None, None, None)


def test_coordinates_rescaled_to_unit_range_give_no_location_graph():
    """LLM-Mob's coordinates lie in [-1, 1]: a radius in km would link arbitrary locations."""
    import dataclasses

    from stgraph.data.checkins.sessions import CheckinTrainView
    from stgraph.tasks.next_location.task import build_graphs

    log = toy_log()  # five locations, all at (0, 0)
    in_degrees = build_graphs(CheckinTrainView(log), NextLocationConfig())
    assert "location" in in_degrees
    rescaled = dataclasses.replace(log, attrs={**log.attrs, "coords": "normalised"})
    graphs = build_graphs(CheckinTrainView(rescaled), NextLocationConfig())
    assert "location" not in graphs and {"location_category", "category"} <= set(graphs)
