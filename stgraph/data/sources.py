"""One entry point to get a dataset, by card name or by file path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stgraph.data.adapters import ADAPTERS, RawDataset
from stgraph.data.adapters.prices import (
    is_price_folder,
    is_price_table,
    open_price_folder,
    open_price_table,
)
from stgraph.data.adapters.tabular import open_file_dataset
from stgraph.data.cards import cards_dir, load_card
from stgraph.data.download import ensure_files
from stgraph.data.paths import resolve_data_dir
from stgraph.errors import InputError

FILE_SUFFIXES = (".csv", ".parquet", ".pq")


def open_dataset(
    spec: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    graph: str | Path | None = None,
    freq: str | None = None,
    null_value: str | None = None,
) -> RawDataset:
    """Load a dataset from a shipped card name (``"metr-la"``) or a user file path.

    Args:
        spec: a card name in ``datasets/``, or the path of a CSV/Parquet file. A file whose
            header has ticker and close columns is read as a long price table (a trading-calendar
            series, `open_price_table`); a folder of per-ticker CSV files with a close column is
            read as a price folder (`open_price_folder`).
        data_dir: folder holding the card's files directly (``--data-dir``); default
            ``$STGRAPH_DATA_DIR/<name>`` or the user cache (see `resolve_data_dir`).
        download: fetch missing files from the card's URLs.
        graph: for a file path only: an edge-list or adjacency-matrix CSV.
        freq: for a file path only: the sampling interval (inferred when None).
        null_value: overrides the card's rule (``zero``/``nan``/``none``); for a file path the
            default is ``nan``.

    Raises:
        InputError: unknown name, missing or broken files, or data that disagrees with the card.
    """
    # A card name wins over a same-named folder in the working directory (`--data-dir metr-la`).
    is_card = "/" not in spec and (cards_dir() / f"{spec}.yaml").is_file()
    if not is_card and (Path(spec).expanduser().exists() or spec.lower().endswith(FILE_SUFFIXES)):
        if is_price_folder(Path(spec).expanduser()):
            return open_price_folder(spec)
        if Path(spec).expanduser().is_dir():
            raise InputError(
                f"{Path(spec).expanduser()}: a data folder is read as daily prices, one CSV file "
                "per ticker (date, open, high, low, close, volume), but it holds no *.csv file "
                "with a close column."
            )
        if Path(spec).expanduser().is_file() and is_price_table(Path(spec).expanduser()):
            if graph is not None or freq is not None:
                raise InputError(
                    f"{spec} is a price table (ticker and close columns): its calendar is its "
                    "trading days, so --freq does not apply, nor --graph yet."
                )
            return open_price_table(spec)
        return open_file_dataset(spec, graph=graph, freq=freq, null_value=null_value or "nan")
    if graph is not None or freq is not None:
        raise InputError(
            f"--graph and --freq apply to your own data files only; '{spec}' is a dataset card "
            "that defines its own graph and frequency."
        )
    card = load_card(spec)
    if card.domain == "mobility":
        raise InputError(
            f"Dataset '{spec}' holds check-ins, not a time series: it is read by the "
            f"next-location task (`stgraph fit {spec}`, or `--task next-location`; in Python "
            "`stgraph.data.checkins.open_checkins`)."
        )
    if null_value is not None:
        card = dataclasses.replace(card, null_value=null_value)
    folder = resolve_data_dir(card.name, data_dir)
    if card.files:
        ensure_files(card, folder, download)
    dataset = ADAPTERS.get(card.format)(card, folder)
    check_expected(dataset, folder)
    return dataset


def check_expected(dataset: RawDataset, folder: Path) -> None:
    """Compare the loaded shape with the card's ``expected: {nodes, steps}``.

    ``steps`` counts the time steps in the file, before absent grid steps were inserted as masked
    rows (PEMS-BAY's file lacks 12 steps of its grid).
    """
    card, series = dataset.card, dataset.series
    inserted = int(series.attrs.get("inserted_steps", 0))
    found = {"nodes": series.num_nodes, "steps": series.num_steps - inserted}
    wrong = [
        f"expected {card.expected[key]} {key}, found {found[key]}"
        for key in ("nodes", "steps")
        if key in card.expected and int(card.expected[key]) != found[key]
    ]
    if wrong:
        files = ", ".join(str(folder / f.name) for f in card.files) or "(no files)"
        raise InputError(
            f"Dataset '{card.name}' (card {card.path or card.name}; files {files}): "
            f"{'; '.join(wrong)}. The files are a different version or were cut short; "
            "download them again."
        )
