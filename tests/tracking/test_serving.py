"""``mlflow models serve`` on a promoted alias answers with the same forecast as
``stgraph forecast`` on the same history."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from stgraph.cli import main
from tests.serving.toy import store_env, toy_frame, trained_toy

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_ping(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the model server exited early"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url} within {seconds} s")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its worker), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        if server.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=wait)


def test_served_alias_equals_stgraph_forecast(_session_home, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    trained_toy(_session_home)
    history = toy_frame().tail(48)  # recent history only, as a client would send
    history.to_csv(tmp_path / "recent.csv", index=False)
    assert main(["forecast", "models:/toy@prod", "--input", str(tmp_path / "recent.csv"),
                 "--output", str(tmp_path / "f.parquet")]) == 0  # fmt: skip
    capsys.readouterr()
    expected = pd.read_parquet(tmp_path / "f.parquet")

    # `mlflow models serve --env-manager local` runs `uvicorn` from PATH: the venv's own.
    bin_dir = Path(sys.executable).parent
    env = store_env(_session_home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/toy@prod",
         "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_ping(f"http://127.0.0.1:{port}/ping", server, seconds=120)
        body = {
            "dataframe_split": {
                "columns": list(history.columns),
                "data": [
                    [row.timestamp.isoformat(), *row[1:]] for row in history.itertuples(index=False)
                ],
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        _stop(server)
        log.close()
    served = pd.DataFrame(answer["predictions"])
    assert len(served) == len(expected)
    served_times = pd.to_datetime(served["timestamp"]).dt.tz_localize(None)
    assert served_times.tolist() == expected["timestamp"].tolist()
    assert served["node"].tolist() == expected["node"].tolist()
    assert served["horizon"].tolist() == expected["horizon"].tolist()
    assert served["value"].tolist() == pytest.approx(expected["value"].tolist(), rel=1e-6)
