"""The local model cache of `resolve_model` (issue #16 item 5): a resolved version is downloaded
once, an alias is still looked up on every call, a damaged entry is fetched again, and several
processes filling the same entry at once all succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import mlflow
import pytest
import torch

from stgraph.serving import registry
from stgraph.serving.registry import model_cache_dir, resolve_model
from stgraph.tracking.store import default_artifact_root
from tests.serving.toy import trained_toy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(_session_home):
    return trained_toy(_session_home)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh stgraph home (so an empty model cache) on the session's MLflow store."""
    home = tmp_path / "home"
    monkeypatch.setenv("STGRAPH_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # MLflow would put a new experiment's artifacts in ./mlruns
    return home


@pytest.fixture
def downloads(monkeypatch):
    """Every `mlflow.artifacts.download_artifacts` call, by URI."""
    calls: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def counting(artifact_uri=None, *args, **kwargs):
        calls.append(artifact_uri)
        return real(artifact_uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", counting)
    return calls


def _entries() -> list[Path]:
    root = model_cache_dir()
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def test_second_call_does_not_download(toy, cache_home, downloads):
    first = resolve_model("models:/toy/1")
    assert downloads and first.version == "1" and first.run_id == toy["run_id"]
    assert len(_entries()) == 1
    manifest = json.loads((_entries()[0] / "entry.json").read_text())
    assert manifest["version"] == "1" and manifest["run_id"] == toy["run_id"]
    assert str(model_cache_dir()).startswith(str(cache_home))

    downloads.clear()
    second = resolve_model("models:/toy/1")
    third = resolve_model("models:/toy@prod")  # the alias is looked up, then the cached version
    assert downloads == []
    assert second.version == third.version == "1"
    assert second.run_id == third.run_id == toy["run_id"]
    assert len(_entries()) == 1


def _new_version(client, name: str, toy: dict, marker: int) -> tuple[str, str]:
    """A registry version of ``name`` from a new run whose checkpoint is the toy bundle with an
    extra ``marker`` key (so that each version is a different file); its number and sha256."""
    bundle_path = mlflow.artifacts.download_artifacts(f"runs:/{toy['run_id']}/checkpoint/model.pt")
    bundle = torch.load(bundle_path, map_location="cpu", weights_only=False)
    bundle["test_marker"] = marker
    folder = Path(f"checkpoint-{uuid.uuid4().hex[:6]}")
    folder.mkdir()
    torch.save(bundle, folder / "model.pt")
    experiment = client.get_experiment_by_name("cache-tests") or client.create_experiment(
        "cache-tests", default_artifact_root()
    )
    experiment_id = getattr(experiment, "experiment_id", experiment)
    run = client.create_run(experiment_id)
    client.log_artifact(run.info.run_id, str(folder / "model.pt"), "checkpoint")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        name, f"runs:/{run.info.run_id}/checkpoint", run_id=run.info.run_id
    )
    return str(version.version), registry._sha256(folder / "model.pt")


def _cached_sha256(resolved) -> str:
    """The sha256 of the bundle the cache holds for the version ``resolved`` was pinned to."""
    (entry,) = [
        e
        for e in _entries()
        if json.loads((e / "entry.json").read_text())["version"] == resolved.version
    ]
    return json.loads((entry / "entry.json").read_text())["sha256"]


def test_moved_alias_yields_the_new_version(toy, cache_home, downloads):
    client = mlflow.MlflowClient()
    name = f"cache-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    one, sha_one = _new_version(client, name, toy, marker=1)
    two, sha_two = _new_version(client, name, toy, marker=2)
    client.set_registered_model_alias(name, "prod", one)

    first = resolve_model(f"models:/{name}@prod")
    assert first.version == one and downloads
    assert _cached_sha256(first) == sha_one
    downloads.clear()
    assert resolve_model(f"models:/{name}@prod").version == one and downloads == []

    client.set_registered_model_alias(name, "prod", two)
    moved = resolve_model(f"models:/{name}@prod")
    assert moved.version == two and moved.run_id != first.run_id
    assert downloads  # a version not cached yet
    assert _cached_sha256(moved) == sha_two != sha_one

    downloads.clear()
    client.set_registered_model_alias(name, "prod", one)
    back = resolve_model(f"models:/{name}@prod")
    assert back.version == one and downloads == []  # both versions are cached now
    assert len(_entries()) == 2


@pytest.mark.parametrize("damage", ["flipped", "truncated", "manifest", "no-bundle"])
def test_damaged_entry_is_detected_and_fetched_again(toy, cache_home, downloads, damage):
    resolve_model("models:/toy/1")
    (entry,) = _entries()
    bundle, manifest = entry / "model.pt", entry / "entry.json"
    good = bundle.read_bytes()
    if damage == "flipped":  # same size, different bytes: only the sha256 tells
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        bundle.write_bytes(bytes(data))
    elif damage == "truncated":
        bundle.write_bytes(good[: len(good) // 3])
    elif damage == "manifest":
        manifest.write_text('{"format": 1, "sha2')
    else:
        bundle.unlink()
    # A fill that died half-way leaves its temporary folder: it must not be taken for the entry.
    (model_cache_dir() / f".fill-{entry.name}-dead").mkdir()

    downloads.clear()
    again = resolve_model("models:/toy/1")
    assert downloads, "the damaged entry was used instead of being fetched again"
    assert again.version == "1"
    assert bundle.read_bytes() == good
    assert json.loads(manifest.read_text())["size"] == len(good)
    assert [p.name for p in _entries()] == [entry.name]
    downloads.clear()
    resolve_model("models:/toy/1")
    assert downloads == []


FILLER = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path

    import mlflow
    from stgraph.serving import registry

    folder, count, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    fetched = []
    real_download = mlflow.artifacts.download_artifacts

    def counting(uri=None, *args, **kwargs):
        fetched.append(uri)
        return real_download(uri, *args, **kwargs)

    mlflow.artifacts.download_artifacts = counting
    real_publish = registry._publish

    def publish_together(staged, entry):
        # Every process has downloaded and staged its copy before any renames it into place.
        (folder / f"staged-{me}").touch()
        deadline = time.monotonic() + 120
        while len(list(folder.glob("staged-*"))) < count and time.monotonic() < deadline:
            time.sleep(0.002)
        return real_publish(staged, entry)

    registry._publish = publish_together
    print("ready", flush=True)
    while not (folder / "go").exists():
        time.sleep(0.002)
    model = registry.resolve_model("models:/toy/1")
    entry = registry.model_cache_dir() / registry._pin(registry._client(), model.uri).key
    digest = hashlib.sha256((entry / "model.pt").read_bytes()).hexdigest()
    print(model.version, len(fetched), digest, flush=True)
    """
)


def test_concurrent_fills_from_several_processes(toy, cache_home, tmp_path):
    count = 4
    folder = tmp_path / "barrier"
    folder.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILLER, str(folder), str(count), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for i in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        (folder / "go").touch()
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0] * count, [err for _, err in results]
    lines = [out.strip().splitlines()[-1].split() for out, _ in results]
    assert all(version == "1" for version, _, _ in lines)
    assert all(int(fetched) >= 1 for _, fetched, _ in lines)  # every process filled it itself
    assert len({digest for _, _, digest in lines}) == 1
    root = model_cache_dir()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no leftovers
    (entry,) = _entries()
    assert registry._valid(entry)
