"""The task seam: a second task, defined here in the test suite alone, goes through the public
pipeline, trainer, tracker, CLI and serving without a line of theirs written for it.

The task: will each node's next reading be higher than its last one? A per-node binary
classification on the simulator, scored by accuracy (maximised), with a two-term loss.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from stgraph.cli import main
from stgraph.config import option
from stgraph.data.config import DataConfig
from stgraph.data.scaler import StandardScaler
from stgraph.data.views import SeriesTrainView
from stgraph.data.windows import split_samples
from stgraph.models.base import MODELS, Model, ModelConfig
from stgraph.pipeline import fit, resolve_config
from stgraph.serving.bundle import load_predictor
from stgraph.tasks.base import TASKS, Batch, Loss, ModelContext, Predictor, Report, Task, Tensors

NAME = "rise"


@dataclass(frozen=True)
class RiseInputs(Tensors):
    x: torch.Tensor  # [B, W, N] scaled readings, 0 where missing


@dataclass(frozen=True)
class RiseTargets(Tensors):
    rises: torch.Tensor  # [B, N] 1.0 if the next reading is above the last one
    observed: torch.Tensor  # [B, N] both readings present


@dataclass(frozen=True)
class RiseContext(ModelContext):
    num_nodes: int
    window: int


class Accuracy:
    """Correct calls and scored calls, summed over a split."""

    def __init__(self) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, targets: RiseTargets) -> None:
        correct = ((prediction > 0.5).double() == targets.rises.double()) & targets.observed
        self.sums += torch.stack([correct.sum(), targets.observed.sum()]).double()

    def state(self) -> torch.Tensor:
        return self.sums.clone()

    def load_state(self, state: torch.Tensor) -> None:
        self.sums = state.clone()

    def compute(self) -> dict[str, float]:
        correct, count = self.sums.tolist()
        return {"accuracy": correct / count if count else float("nan"), "scored": count}


@dataclass
class RiseConfig:
    window: int = option(6, "input steps")
    sharpness: float = option(0.0, "weight of the second loss term")


class RisePredictor(Predictor):
    id_columns = ("node",)

    def __init__(self, state: dict[str, Any], model: torch.nn.Module) -> None:
        self.state, self.model = state, model
        self.scaler = StandardScaler.from_state_dict(state["scaler"])

    @property
    def rows_per_prediction(self) -> int:
        return len(self.state["nodes"])

    def read_input(self, input_file, dataset, data_dir) -> pd.DataFrame:
        return pd.read_csv(input_file, index_col="timestamp", parse_dates=True)

    def last_time(self, data: pd.DataFrame) -> pd.Timestamp:
        return data.index[-1]

    def parse_time(self, value, data, what) -> pd.Timestamp:
        return pd.Timestamp(value)

    def describe_input(self, data: pd.DataFrame, as_of) -> dict[str, Any]:
        return {"source": "frame", "sha256": "", "metrics": {"input_rows": len(data)}}

    def predict(self, data: pd.DataFrame, as_of=None) -> pd.DataFrame:
        window = data.loc[:as_of].iloc[-self.state["window"] :][self.state["nodes"]]
        x = torch.tensor(window.to_numpy(np.float32))[None, :, :, None]
        x = torch.where(x != 0, self.scaler.transform(x), 0.0)[..., 0]
        with torch.no_grad():
            p = torch.sigmoid(self.model(RiseInputs(x)))[0].numpy()
        stamp = window.index[-1] if as_of is None else pd.Timestamp(as_of)
        return pd.DataFrame(
            {"as_of": stamp, "node": self.state["nodes"], "horizon": 1, "p_rise": p}
        )

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.predict(frame.set_index("timestamp"))

    def realised_errors(self, predictions, data) -> pd.DataFrame:
        return pd.DataFrame(columns=["as_of", "horizon", "error"])


@TASKS.register(NAME)
class RiseTask(Task):
    """Will each node's next reading be above its last one (test-suite task)."""

    name = NAME
    config_class = RiseConfig
    predictor_class = RisePredictor
    default_model = "rise-logistic"
    monitor = "accuracy"

    def __init__(self, series, splits, config: RiseConfig) -> None:
        self.series, self.splits, self.config = series, splits, config
        self.dataset_name = series.name
        view = SeriesTrainView.of(series, splits.train_steps)
        self.scaler = StandardScaler.fit(view.series.values, view.series.mask)
        self.train_view = view.with_scaler(self.scaler)
        self.context = RiseContext(num_nodes=series.num_nodes, window=config.window)

    @classmethod
    def build(cls, data: DataConfig, config: RiseConfig) -> RiseTask:
        from stgraph.data.sources import open_dataset

        series = open_dataset(data.dataset, data_dir=data.data_dir).series
        splits = split_samples(series.timestamps, config.window, 1, ratios=[0.7, 0.1, 0.2])
        return cls(series, splits, config)

    def goal(self, metric: str) -> str:
        return "max" if metric == "accuracy" else "min"

    def num_samples(self, split: str) -> int:
        return len(self.splits[split])

    def batches(self, split, batch_size, shuffle=False, seed=0, epoch=0, rank=0, world_size=1,
                limit=None) -> Iterator[Batch]:  # fmt: skip
        anchors = self.splits[split]
        if shuffle:
            anchors = np.random.default_rng(seed * 1000 + epoch).permutation(anchors)
        values, mask = self.series.values[..., 0], self.series.mask[..., 0]
        for number, start in enumerate(range(0, len(anchors), batch_size)):
            if limit is not None and number >= limit:
                return
            a = anchors[start : start + batch_size]
            steps = a[:, None] + np.arange(-self.config.window + 1, 1)
            x = torch.from_numpy(values[steps])
            seen = torch.from_numpy(mask[steps])
            x = torch.where(seen, (x - float(self.scaler.mean[0])) / float(self.scaler.std[0]), 0)
            last, after = values[a], values[a + 1]
            observed = torch.from_numpy(mask[a] & mask[a + 1])
            rises = torch.from_numpy((after > last).astype(np.float32))
            yield Batch(RiseInputs(x), RiseTargets(rises, observed))

    def loss(self, output: torch.Tensor, batch: Batch) -> Loss:
        observed = batch.targets.observed
        bce = F.binary_cross_entropy_with_logits(output, batch.targets.rises, reduction="none")
        terms = {"bce": (bce * observed).sum(), "sharpness": (-output.abs() * observed).sum()}
        weights = {"sharpness": self.config.sharpness}
        return Loss.weighted(terms, weights, self.loss_weight(batch, output))

    def loss_weight(self, batch: Batch, output: torch.Tensor) -> torch.Tensor:
        return batch.targets.observed.sum()

    def predict(self, output: torch.Tensor, batch: Batch, split: str) -> torch.Tensor:
        return torch.sigmoid(output)

    def new_metrics(self) -> Accuracy:
        return Accuracy()

    def update_metrics(self, metrics: Accuracy, prediction, batch: Batch) -> None:
        metrics.update(prediction, batch.targets)

    def report(self, split, metrics, predictions, model_name) -> Report:
        probabilities = torch.cat(predictions).numpy()
        return Report(tables={"predictions/p_rise.parquet": pd.DataFrame(probabilities)})

    def export(self) -> dict[str, Any]:
        return {
            "scaler": self.scaler.state_dict(),
            "nodes": list(self.series.node_ids),
            "window": self.config.window,
        }


@dataclass
class LogisticConfig(ModelConfig):
    hidden: int = option(0, "unused width (a typed parameter the config layer checks)")


@MODELS.register("rise-logistic")
class RiseLogistic(Model):
    """Logistic regression on each node's window, shared by all nodes (test-suite model)."""

    config_class = LogisticConfig
    task = NAME

    def __init__(self, config: LogisticConfig, context: RiseContext) -> None:
        super().__init__(config, context)
        self.linear = torch.nn.Linear(context.window, 1)
        self.fitted_mean = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def fit_train(self, train: SeriesTrainView) -> None:
        self.fitted_mean.fill_(float(train.series.values[train.series.mask].mean()))

    def forward(self, inputs: RiseInputs) -> torch.Tensor:
        return self.linear(inputs.x.transpose(1, 2))[..., 0]  # [B, N] logits


def test_loss_is_the_weighted_sum_of_named_terms():
    output = torch.tensor([[2.0, -1.0]])
    targets = RiseTargets(torch.tensor([[1.0, 1.0]]), torch.tensor([[True, False]]))
    task = RiseTask.__new__(RiseTask)
    task.config = RiseConfig(sharpness=0.5)
    loss = task.loss(output, Batch(RiseInputs(torch.zeros(1, 6, 2)), targets))
    bce = float(np.log1p(np.exp(-2.0)))  # node 0 only: node 1 is not observed
    assert loss.terms["bce"].item() == pytest.approx(bce)
    assert loss.terms["sharpness"].item() == pytest.approx(-2.0)
    assert loss.total.item() == pytest.approx(bce - 0.5 * 2.0)
    assert loss.weight.item() == 1 and loss.mean().item() == pytest.approx(bce - 1.0)


@pytest.mark.slow  # fits, tracks and serves through MLflow
def test_a_second_task_trains_tracks_early_stops_on_a_maximum_and_serves(tmp_path, capsys):
    config = resolve_config(
        "simulator",
        task=NAME,
        assignments=[
            "train.epochs=12",
            "train.patience=2",
            "train.lr=0.05",
            "train.batch_size=256",
        ],
    )
    assert config.model.name == "rise-logistic" and config.task.params["window"] == 6
    summary = fit(config, quiet=True)
    assert summary["task"] == NAME and 0.5 < summary["test"]["accuracy"] <= 1.0

    run = mlflow.MlflowClient().get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["task"] == NAME
    assert run.data.params["task.params.window"] == "6"
    history = [
        m.value for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    ]
    # Selection and early stopping follow the maximum: the best epoch is the (first) highest
    # validation accuracy, and training stopped `patience` epochs after it.
    assert summary["best_epoch"] == int(np.argmax(history)) + 1
    assert summary["epochs"] == len(history) == min(12, summary["best_epoch"] + 2)
    assert summary["epochs"] < 12, "a logistic model plateaus well before 12 epochs"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoint", "predictions"} <= artifacts

    # Served through the public API: the bundle, and the logged MLflow pyfunc.
    bundle = mlflow.artifacts.download_artifacts(
        f"runs:/{run.info.run_id}/checkpoint/model.pt", dst_path=str(tmp_path)
    )
    predictor = load_predictor(bundle)
    assert isinstance(predictor, RisePredictor) and predictor.model.fitted_mean.item() > 0
    frame = _recent_readings(predictor.state["nodes"])
    table = predictor.predict_frame(frame)
    assert len(table) == predictor.rows_per_prediction and table["p_rise"].between(0, 1).all()
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(frame)
    pd.testing.assert_frame_equal(served, table)

    # `stgraph forecast` writes its table through the same protocol.
    csv, out = tmp_path / "recent.csv", tmp_path / "p.parquet"
    frame.to_csv(csv, index=False)
    code = main(["forecast", f"runs:/{run.info.run_id}/model", "--input", str(csv),
                 "--output", str(out), "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = pd.read_parquet(out)
    np.testing.assert_allclose(written["p_rise"], table["p_rise"])
    assert set(written["model_uri"]) == {f"runs:/{run.info.run_id}/model"}

    # The CLI lists the task and prints its metrics without knowing them.
    assert main(["tasks", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listing["tasks"][NAME]["models"] == ["rise-logistic"]


def test_cli_summary_table_takes_any_metric_names():
    from stgraph.cli.output import metrics_table

    lines = metrics_table({"acc@1": 0.25, "acc@5": 0.5, "mrr": 0.3125, "mae_avg12": 1.0})
    assert lines[0].split() == ["1", "5", "avg12"]
    assert lines[1].split() == ["acc", "0.2500", "0.5000"]
    assert lines[2].split() == ["mae", "1.0000"]
    assert lines[3] == "mrr 0.3125"


def _recent_readings(nodes: list[str]) -> pd.DataFrame:
    stamps = pd.date_range("2024-02-01", periods=6, freq="5min")
    rng = np.random.default_rng(0)
    values = 50 + rng.normal(0, 5, (6, len(nodes)))
    return pd.DataFrame(values, columns=nodes).assign(timestamp=stamps)[["timestamp", *nodes]]


def test_the_trainer_hands_models_their_inputs_alone(tmp_path):
    from stgraph.training.config import TrainConfig
    from stgraph.training.trainer import Trainer

    seen = []

    class Spy(RiseLogistic):
        def forward(self, inputs):
            seen.append(type(inputs))
            return super().forward(inputs)

    task = RiseTask.build(DataConfig(), RiseConfig())
    config = TrainConfig(epochs=1, batch_size=256, limit_batches=2, micro_batch_size=100)
    Trainer(task, Spy(LogisticConfig(), task.context), config, tmp_path, quiet=True).fit()
    assert seen and set(seen) == {RiseInputs}  # training and validation alike
