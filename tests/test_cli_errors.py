"""Bad input through the real ``stgraph`` command line: exit code 2, one ``stgraph: error:`` line
that names the file or key and the problem, no traceback (unless ``--debug``), and nothing
half-written: no MLflow run, no checkpoint folder, no file next to the inputs or in the current
directory.

Every case runs in-process through `stgraph.cli.main` (cheap: the CLI imports torch and MLflow
once); a representative subset also runs as ``python -m stgraph`` in a subprocess, which checks
the real exit status and stderr of the console entry point.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

# The verified-digest cache that `ensure_files` keeps beside a card's files (see
# stgraph/data/download.py): written atomically once a pinned sha256 checked out, so it is a
# complete file about a complete input, never a half-written output.
DIGEST_CACHE = ".sha256-ok"


# ----------------------------------------------------------------------------- inputs
def wide_frame(steps: int = 300, nodes: int = 3) -> pd.DataFrame:
    """A wide table: ``timestamp`` plus one smooth numeric column per node, 5-minute steps."""
    stamps = pd.date_range("2024-01-01", periods=steps, freq="5min")
    t = np.arange(steps)
    columns = {f"s{i}": 50.0 + 10.0 * np.sin(t / 7.0 + i) for i in range(nodes)}
    return pd.DataFrame({"timestamp": stamps, **columns})


def write_csv(path: Path, frame: pd.DataFrame | None = None) -> Path:
    (wide_frame() if frame is None else frame).to_csv(path, index=False)
    return path


def metr_la_ids(shared: Path) -> list[str]:
    with open(shared / "traffic" / "metr-la" / "adj_mx.pkl", "rb") as handle:
        return [str(s) for s in pickle.load(handle, encoding="latin1")[0]]


def metr_la_folder(tmp: Path, shared: Path, columns: list[str]) -> Path:
    """``tmp/metr-la`` with a small DCRNN-style ``metr-la.h5`` and the real ``adj_mx.pkl``.

    The CLI runs in ``tmp``, so this folder is also ``./metr-la``: the card name must still win.
    """
    folder = tmp / "metr-la"
    folder.mkdir()
    shutil.copyfile(shared / "traffic" / "metr-la" / "adj_mx.pkl", folder / "adj_mx.pkl")
    stamps = pd.date_range("2012-03-01", periods=48, freq="5min")
    frame = pd.DataFrame(np.full((48, len(columns)), 60.0), index=stamps, columns=columns)
    frame.to_hdf(folder / "metr-la.h5", key="df")
    return folder


@dataclass
class Case:
    """``build(tmp, shared_data)`` writes the inputs under ``tmp`` and returns the CLI arguments
    (``shared_data`` is a callable, so cases without real data do not need the folder)."""

    build: Callable[[Path, Callable[[], Path]], list[str]]
    expect: tuple[str, ...]  # fragments of the error line


def _missing(tmp, shared):
    return ["fit", str(tmp / "readings.csv")]


def _missing_card_files(tmp, shared):
    (tmp / "empty-folder").mkdir()
    return ["fit", "metr-la", "--data-dir", str(tmp / "empty-folder")]


def _empty(tmp, shared):
    (tmp / "readings.csv").write_bytes(b"")
    return ["fit", str(tmp / "readings.csv")]


def _truncated_h5(tmp, shared):
    folder = metr_la_folder(tmp, shared(), metr_la_ids(shared()))
    data = (folder / "metr-la.h5").read_bytes()
    (folder / "metr-la.h5").write_bytes(data[: len(data) // 3])
    return ["fit", "metr-la", "--data-dir", str(folder)]


def _h5_ids_disagree(tmp, shared):
    folder = metr_la_folder(tmp, shared(), [f"9{i:05d}" for i in range(6)])
    return ["fit", "metr-la", "--data-dir", str(folder)]


def _truncated_csv(tmp, shared):
    data = write_csv(tmp / "readings.csv").read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 12  # a copy cut off inside the timestamp of a row
    (tmp / "readings.csv").write_bytes(data[:cut])
    return ["fit", str(tmp / "readings.csv"), "--epochs", "1"]


def _ragged_csv(tmp, shared):
    lines = write_csv(tmp / "readings.csv").read_text().splitlines()
    lines[40] += ",7.5,8.5"  # two fields too many in one row
    (tmp / "readings.csv").write_text("\n".join(lines) + "\n")
    return ["fit", str(tmp / "readings.csv"), "--epochs", "1"]


def _truncated_parquet(tmp, shared):
    wide_frame().to_parquet(tmp / "readings.parquet")
    data = (tmp / "readings.parquet").read_bytes()
    (tmp / "readings.parquet").write_bytes(data[: len(data) // 2])
    return ["fit", str(tmp / "readings.parquet"), "--epochs", "1"]


def _with_cell(value: float):
    def build(tmp, shared):
        frame = wide_frame()
        frame.loc[5, "s1"] = value
        write_csv(tmp / "readings.csv", frame)
        return ["fit", str(tmp / "readings.csv"), "--epochs", "1"]

    return build


def _nan_with(null_value: str):
    def build(tmp, shared):
        return [*_with_cell(np.nan)(tmp, shared), "--null-value", null_value]

    return build


def _adjacency_wrong_size(tmp, shared):
    write_csv(tmp / "readings.csv")
    pd.DataFrame(np.ones((4, 4))).to_csv(tmp / "graph.csv", index=False, header=False)
    return ["fit", str(tmp / "readings.csv"), "--graph", str(tmp / "graph.csv"), "--epochs", "1"]


def _edge_list_unknown_node(tmp, shared):
    write_csv(tmp / "readings.csv")
    (tmp / "graph.csv").write_text("from,to,weight\ns0,s1,1.0\ns1,s7,0.5\n")
    return ["fit", str(tmp / "readings.csv"), "--graph", str(tmp / "graph.csv"), "--epochs", "1"]


def _los_adjacency_wrong_size(tmp, shared):
    folder = tmp / "los-loop"
    folder.mkdir()
    shutil.copyfile(shared() / "traffic" / "los-loop" / "los_speed.csv", folder / "los_speed.csv")
    pd.DataFrame(np.eye(5)).to_csv(folder / "los_adj.csv", index=False, header=False)
    return ["fit", "los-loop", "--data-dir", str(folder), "--epochs", "1"]


def _duplicate_timestamps(tmp, shared):
    frame = wide_frame()
    frame.loc[7, "timestamp"] = frame.loc[6, "timestamp"]
    write_csv(tmp / "readings.csv", frame)
    return ["fit", str(tmp / "readings.csv"), "--epochs", "1"]


def _unsorted_timestamps(tmp, shared):
    frame = wide_frame()
    frame.loc[[7, 8], "timestamp"] = frame.loc[[8, 7], "timestamp"].to_numpy()
    write_csv(tmp / "readings.csv", frame)
    return ["fit", str(tmp / "readings.csv"), "--epochs", "1"]


def _on_good_csv(*extra: str):
    def build(tmp, shared):
        return ["fit", str(write_csv(tmp / "readings.csv")), *extra]

    return build


def _batch_larger_than_split(tmp, shared):
    write_csv(tmp / "readings.csv", wide_frame(steps=40))
    return ["fit", str(tmp / "readings.csv"), "--epochs", "1", "--batch-size", "512"]


CASES: dict[str, Case] = {
    "missing-file": Case(_missing, ("readings.csv", "does not exist")),
    "missing-card-files": Case(_missing_card_files, ("empty-folder", "metr-la.h5", "adj_mx.pkl")),
    "empty-file": Case(_empty, ("readings.csv", "empty (0 bytes)")),
    "truncated-h5": Case(_truncated_h5, ("metr-la.h5", "truncated, corrupt")),
    "h5-ids-disagree": Case(
        _h5_ids_disagree, ("metr-la.h5", "adj_mx.pkl", "Sensor ids disagree", "900000")
    ),
    "truncated-csv": Case(_truncated_csv, ("readings.csv", "truncated", "last line has 1 of 4")),
    "ragged-csv": Case(_ragged_csv, ("readings.csv", "not a well-formed CSV")),
    "truncated-parquet": Case(_truncated_parquet, ("readings.parquet", "not a readable Parquet")),
    "nan-with-null-none": Case(_nan_with("none"), ("readings.csv", "NaN/inf", "'none'")),
    "nan-with-null-zero": Case(_nan_with("zero"), ("readings.csv", "NaN/inf", "'zero'")),
    "inf-value": Case(_with_cell(np.inf), ("readings.csv", "NaN/inf", "'nan'")),
    "adjacency-wrong-size": Case(
        _adjacency_wrong_size, ("graph.csv", "4x4", "readings.csv has 3 nodes")
    ),
    "edge-list-unknown-node": Case(
        _edge_list_unknown_node, ("graph.csv", "not columns of", "readings.csv", "s7")
    ),
    # The card pins the files' sha256, so a wrong-size los_adj.csv is caught as a different file.
    "los-adjacency-wrong-size": Case(_los_adjacency_wrong_size, ("los_adj.csv", "sha256")),
    "duplicate-timestamps": Case(
        _duplicate_timestamps, ("readings.csv", "duplicate timestamp", "line 9")
    ),
    "unsorted-timestamps": Case(
        _unsorted_timestamps, ("readings.csv", "out-of-order timestamp", "line 10")
    ),
    "unknown-dataset": Case(lambda tmp, shared: ["fit", "los-lop"], ("los-lop", "'los-loop'")),
    "unknown-model": Case(
        _on_good_csv("--model", "sttm"), ("Unknown model 'sttm'", "Did you mean 'sttn'")
    ),
    # Keys are named as the user typed them (`train.lrr`, not `config.train.lrr`).
    "unknown-config-key": Case(
        _on_good_csv("--set", "train.lrr=1"),
        ("Unknown config key 'train.lrr'", "Did you mean 'lr'", "Known keys of 'train'"),
    ),
    "unknown-config-section": Case(
        _on_good_csv("--set", "trian.lr=1"),
        ("Unknown config key 'trian'", "Did you mean 'train'", "Known keys at the top level"),
    ),
    "config-value-of-wrong-type": Case(
        _on_good_csv("--set", "train.lr=fast"), ("Config key 'train.lr' must be float",)
    ),
    "unknown-task-param": Case(
        _on_good_csv("--set", "task.params.windw=6"),
        ("Unknown config key 'task.params.windw'", "Did you mean 'window'"),
    ),
    "unknown-model-param": Case(
        _on_good_csv("--set", "model.params.hiden=6"),
        ("Unknown config key 'model.params.hiden'", "Did you mean 'hidden'"),
    ),
    "model-params-that-do-not-fit-together": Case(
        _on_good_csv("--model", "gram-ode", "--set", "model.params.node_readout=false"),
        ("model.params of 'gram-ode'", "seasonal_prior", "node_readout"),
    ),
    "zero-epochs": Case(_on_good_csv("--epochs", "0"), ("train.epochs", "--epochs", "positive")),
    "zero-batch-size": Case(
        _on_good_csv("--batch-size", "0"), ("train.batch_size", "--batch-size", "positive")
    ),
    "batch-larger-than-split": Case(
        _batch_larger_than_split, ("12 windows", "fewer than one batch of 512", "--batch-size")
    ),
}
NEEDS_REAL_DATA = {"truncated-h5", "h5-ids-disagree", "los-adjacency-wrong-size"}
# One per kind of failure; each subprocess pays the CLI's import time (seconds).
IN_SUBPROCESS = (
    "missing-file",
    "truncated-h5",
    "truncated-csv",
    "unknown-dataset",
    "unknown-config-key",
    "batch-larger-than-split",
)


# ----------------------------------------------------------------------------- state checks
def _listing(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != DIGEST_CACHE}


def _runs() -> dict[str, str]:
    """run id -> status of every run in the test's MLflow store."""
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return {}
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=50000)
    return {run.info.run_id: run.info.status for run in runs}


@dataclass
class Snapshot:
    files: set[str]
    checkpoints: set[str]
    runs: dict[str, str]


def _snapshot(tmp: Path) -> Snapshot:
    home = Path(os.environ["STGRAPH_HOME"])
    return Snapshot(_listing(tmp), _listing(home / "runs"), _runs())


def _assert_nothing_written(before: Snapshot, tmp: Path) -> None:
    after = _snapshot(tmp)
    assert after.files == before.files, (
        f"files created beside the inputs / in the working directory: "
        f"{sorted(after.files - before.files)}"
    )
    assert after.checkpoints == before.checkpoints, "a checkpoint folder was created"
    new = {rid: status for rid, status in after.runs.items() if rid not in before.runs}
    assert not new, f"MLflow run(s) created for bad input: {new}"
    assert "RUNNING" not in after.runs.values(), after.runs


def _assert_one_error_line(stderr: str, expect: tuple[str, ...]) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("stgraph: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    message = errors[0]
    assert message.startswith("stgraph: error: "), message
    for fragment in expect:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _prepare(name: str, tmp_path: Path, request) -> list[str]:
    def shared() -> Path:
        return request.getfixturevalue("shared_data")

    if name in NEEDS_REAL_DATA:
        shared()  # skip (or fail under STGRAPH_REQUIRE_REAL_DATA=1) before writing anything
    return CASES[name].build(tmp_path, shared)


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m stgraph ARGV`` with the test's environment, importing this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "stgraph", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_in_process(name, tmp_path, request, monkeypatch, capsys):
    from stgraph.cli import main

    argv = _prepare(name, tmp_path, request)
    monkeypatch.chdir(tmp_path)  # MLflow would put a run's artifacts in ./mlruns
    before = _snapshot(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    _assert_one_error_line(captured.err, CASES[name].expect)
    assert captured.out == ""
    _assert_nothing_written(before, tmp_path)


@pytest.mark.slow  # one `python -m stgraph` process per case
def test_bad_input_in_subprocesses(tmp_path, request):
    """The subset through ``python -m stgraph``, run side by side (each pays the import time),
    plus one with ``--debug``, which must show the traceback."""
    argvs = {}
    for name in IN_SUBPROCESS:
        (tmp_path / name).mkdir()
        argvs[name] = [*_prepare(name, tmp_path / name, request), "--json"]
    (tmp_path / "debug").mkdir()
    argvs["debug"] = [*_prepare("duplicate-timestamps", tmp_path / "debug", request), "--debug"]
    before = _snapshot(tmp_path)
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        futures = {n: pool.submit(run_cli, argv, tmp_path / n) for n, argv in argvs.items()}
        results = {name: future.result() for name, future in futures.items()}

    failures = []
    for name, result in results.items():
        try:
            assert result.returncode == 2, f"exit code {result.returncode}"
            if name == "debug":
                assert "Traceback (most recent call last)" in result.stderr
                assert "InputError" in result.stderr and "check_timestamps" in result.stderr
                assert result.stderr.rstrip().splitlines()[-1].startswith("stgraph: error: ")
            else:
                _assert_one_error_line(result.stderr, CASES[name].expect)
                assert result.stdout == "", "printed a JSON line for a failed fit"
        except AssertionError as exc:
            failures.append(f"{name}: {exc}\n  stderr: {result.stderr[-2000:]}")
    assert not failures, "\n".join(failures)
    _assert_nothing_written(before, tmp_path)


def test_internal_error_exits_1_without_traceback(tmp_path, monkeypatch, capsys):
    from stgraph import pipeline
    from stgraph.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "prepare", broken)
    monkeypatch.chdir(tmp_path)
    argv = ["fit", str(write_csv(tmp_path / "readings.csv")), "--epochs", "1"]
    before = _snapshot(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == (
        "stgraph: internal error: RuntimeError: boom (rerun with --debug for the traceback)"
    )
    _assert_nothing_written(before, tmp_path)

    assert main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
