"""What `stgraph forecast` imports (issue #16 item 5): a scheduled job pays every import on every
tick, so the forecast path imports the model it loads, not every model, graph builder, dataset
adapter or plotting library of the package. Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.serving.toy import trained_toy

ROOT = Path(__file__).resolve().parents[2]

# Imported by nothing that loading an STID bundle and forecasting needs; MLflow's side of the call
# (pinning the URI, recording the run) runs in the bookkeeping child process.
NOT_ON_THE_FORECAST_PATH = [
    "mlflow",
    "sqlalchemy",
    "torch_geometric",  # ~1.5 s with the torch._dynamo it pulls in
    "matplotlib",
    "IPython",  # MLflow's fluent start_run: notebook detection
    "git",  # MLflow's fluent start_run: GitPython for the source commit tag
    "torchdiffeq",
    "stgraph.models.sttn",
    "stgraph.models.gram_ode",
    "stgraph.graphs.builders",
    "stgraph.graphs.normalize",
    "stgraph.data.adapters.pems",
    "stgraph.data.simulator",
]


def _run(code: str, cwd: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_library(tmp_path):
    loaded = _run(
        """
        import json, sys
        import stgraph.cli
        print(json.dumps([m for m in ("torch", "mlflow", "pandas", "numpy") if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []


@pytest.mark.slow
def test_forecast_imports_only_what_it_uses(_session_home, tmp_path):
    toy = trained_toy(_session_home)
    result = _run(
        f"""
        import json, sys
        from stgraph.cli import main
        code = main(["forecast", "models:/toy@prod", "--input", {str(toy["csv"])!r},
                     "--output", {str(tmp_path / "f.parquet")!r}])
        heavy = {NOT_ON_THE_FORECAST_PATH!r}
        print(json.dumps({{"code": code, "loaded": [m for m in heavy if m in sys.modules]}}))
        """,
        tmp_path,
    )
    assert result == {"code": 0, "loaded": []}


def test_the_bookkeeping_process_imports_no_torch(tmp_path):
    loaded = _run(
        """
        import json, sys
        import stgraph.serving.bookkeeper, stgraph.serving.registry, stgraph.tracking.records
        heavy = ("torch", "stgraph.tasks", "stgraph.models")
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []


def test_registries_import_their_modules_on_demand(tmp_path):
    result = _run(
        """
        import json, sys
        from stgraph.models import MODELS
        from stgraph.data.adapters import ADAPTERS
        before = sorted(m for m in sys.modules if m.startswith("stgraph.models."))
        MODELS.get("stid")
        stid = sorted(m for m in sys.modules if m.startswith("stgraph.models."))
        faithful = "gram-ode-faithful" in MODELS  # found by its dash-prefix module gram_ode
        try:
            MODELS.get("no-such-model")
        except Exception as exc:
            unknown = str(exc)
        print(json.dumps({
            "before": before, "stid": stid, "faithful": faithful, "unknown": unknown,
            "models": MODELS.names(), "simulator": ADAPTERS.get("simulator").__module__,
            "adapters": ADAPTERS.names(),
        }))
        """,
        tmp_path,
    )
    assert result["before"] == ["stgraph.models.base"]
    assert result["stid"] == ["stgraph.models.base", "stgraph.models.stid"]
    assert result["faithful"]
    models = result["models"]
    assert {"stid", "sttn", "sttn-faithful", "gram-ode", "persistence"} <= set(models)
    assert all(name in result["unknown"] for name in models)  # the message lists every model
    assert result["simulator"] == "stgraph.data.simulator"
    assert {"simulator", "tabular", "pems-npz", "tgcn-csv", "dcrnn-h5"} <= set(result["adapters"])
