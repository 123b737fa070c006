"""Which data a run reads: the ``data:`` section of a pipeline, the same for every task."""

from __future__ import annotations

from dataclasses import dataclass

from stgraph.config import option


@dataclass
class DataConfig:
    dataset: str = option("simulator", "dataset card name, or the path of a CSV/Parquet file")
    data_dir: str | None = option(None, "folder holding the dataset's files")
    download: bool = option(False, "download missing files listed in the card")
    split: dict = option({}, "overrides of the card's split (method, ratios, val_start, ...)")
    folds: list[dict] = option(
        [],
        "rolling evaluation: one split override per fold (e.g. {train_start, val_start, "
        "test_start, test_end}); each fold is fitted and tested in a nested MLflow run",
    )
    graph: dict = option({}, "overrides of the card's graph recipe (method and parameters)")
    graph_file: str | None = option(None, "your own data: edge list or adjacency CSV")
    freq: str | None = option(None, "your own data: sampling interval, e.g. 15min")
    null_value: str | None = option(None, "your own data: zero | nan | none (what marks missing)")
