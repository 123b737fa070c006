"""Model resolution in the MLflow registry: a URI pinned to one version, and aliases.

Resolved models are cached under ``<stgraph home>/models``, one folder per registry version (or
run), so that a scheduled job downloads a model once, not on every tick. What a URI points at is
looked up in the registry on every call (moving ``@prod`` takes effect at the next call); only the
download of a version already cached is skipped. See `model_cache_dir` for the guarantees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stgraph.errors import InputError

if TYPE_CHECKING:  # torch: the forecast's side; the bookkeeping process never imports it
    from stgraph.tasks.base import Predictor

URI_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"
CACHE_FORMAT = 1
_BUNDLE = "model.pt"
_MANIFEST = "entry.json"
_STALE_AFTER_S = 3600  # a fill folder this old belongs to a process that died


# ----------------------------------------------------------------------------- model resolution
@dataclass
class ResolvedModel:
    """A model URI pinned to what it pointed at when it was resolved."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    predictor: Predictor


@dataclass(frozen=True)
class _Pinned:
    """What a URI points at now: immutable, so its download can be cached under `key`."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    download_uri: str
    source: str  # the registry version's source (its logged model), or the run artifact path

    @property
    def key(self) -> str:
        """The cache folder name: readable prefix, digest of everything that identifies it."""
        from stgraph.tracking.store import tracking_uri

        ident = "\n".join(
            [tracking_uri(), str(self.name), str(self.version), str(self.run_id), self.source]
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:20]
        label = f"{self.name}-v{self.version}" if self.name else f"run-{self.run_id}"
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)[:80]}-{digest}"


def _client():
    import mlflow

    from stgraph.tracking.store import connect

    # Progress bars of artifact downloads would clutter the output of a cron job.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = connect()
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def _version_of(client, uri: str, name: str, ref: str, by_alias: bool):
    """The registry's `ModelVersion` for ``name@ref`` or ``name/ref``, or a clear `InputError`.

    One query when the version exists; the registered model is read only to explain a failure.
    """
    from mlflow.exceptions import MlflowException

    from stgraph.tracking.store import tracking_uri

    try:
        if by_alias:
            return client.get_model_version_by_alias(name, ref)
        if ref == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if versions:
                return max(versions, key=lambda v: int(v.version))
        else:
            return client.get_model_version(name, ref)
    except MlflowException:
        pass
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise InputError(
            f"Model URI '{uri}': no registered model named '{name}' in the MLflow store "
            f"{tracking_uri()} (register one with `stgraph fit ... --register {name}`)."
        ) from None
    if by_alias:
        aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(registered.aliases.items()))
        raise InputError(
            f"Model URI '{uri}': model '{name}' has no alias '{ref}' (aliases: "
            f"{aliases or 'none'}). Set one with `stgraph models promote {name} VERSION "
            f"{ref}`."
        )
    if ref == "latest":
        raise InputError(f"Model URI '{uri}': model '{name}' has no versions.")
    raise InputError(f"Model URI '{uri}': model '{name}' has no version '{ref}'.")


def _pin(client, uri: str) -> _Pinned:
    """Look ``uri`` up in the registry (aliases and ``latest`` resolved now); no download."""
    from mlflow.exceptions import MlflowException

    if uri.startswith("models:/") and len(uri) > len("models:/"):
        rest = uri[len("models:/") :]
        if "@" in rest:
            name, alias = rest.split("@", 1)
            found = _version_of(client, uri, name, alias, by_alias=True)
        elif "/" in rest:
            name, ref = rest.rsplit("/", 1)
            found = _version_of(client, uri, name, ref, by_alias=False)
        else:
            raise InputError(f"Model URI '{uri}': name a version or an alias ({URI_HELP}).")
        version = str(found.version)
        return _Pinned(
            uri, name, version, found.run_id, f"models:/{name}/{version}", str(found.source)
        )
    if uri.startswith("runs:/") and len(uri.split("/")) >= 3:
        run_id = uri.split("/")[1]
        try:
            client.get_run(run_id)
        except MlflowException:
            raise InputError(f"Model URI '{uri}': no run '{run_id}' in the MLflow store.") from None
        return _Pinned(uri, None, None, run_id, uri, "/".join(uri.split("/")[2:]))
    raise InputError(f"Model URI '{uri}' is not one of {URI_HELP}.")


def resolve_model(uri: str) -> ResolvedModel:
    """Pin ``uri`` to one registry version (or run) and load its model bundle.

    The bundle is taken from the *logged model* the URI names (its ``artifacts/model.pt``, found
    through the ``MLmodel`` file): the very files ``mlflow models serve`` loads, wherever the
    model was logged from. An alias is resolved once and the download uses the pinned version, so
    moving the alias mid-call cannot mix two versions. Logged models without the bundle artifact
    fall back to the run's ``checkpoint/model.pt``. A version already in the local cache is not
    downloaded again (`model_cache_dir`).

    Raises:
        InputError: a malformed URI, or a model, version, alias or run that does not exist.
    """
    found = pin_and_cache(uri)
    return load_pinned(found)


def pin_and_cache(uri: str) -> dict[str, Any]:
    """The MLflow half of `resolve_model`: pin ``uri`` and make sure its bundle is in the local
    cache. Returns ``uri``, ``name``, ``version``, ``run_id`` and ``bundle`` (the cached file),
    plain values that cross a process boundary (`stgraph.serving.bookkeeper`)."""
    pinned = _pin(_client(), uri)
    bundle = _cached_bundle(pinned)
    if not bundle.is_file():  # a concurrent process just replaced a damaged entry
        bundle = _cached_bundle(pinned)
    return {
        "uri": uri,
        "name": pinned.name,
        "version": pinned.version,
        "run_id": pinned.run_id,
        "bundle": str(bundle),
    }


def load_pinned(found: dict[str, Any]) -> ResolvedModel:
    """The torch half of `resolve_model`: load the bundle `pin_and_cache` found."""
    from stgraph.serving.bundle import load_predictor

    predictor = load_predictor(Path(found["bundle"]))
    return ResolvedModel(found["uri"], found["name"], found["version"], found["run_id"], predictor)


# ----------------------------------------------------------------------------- local model cache
def model_cache_dir() -> Path:
    """``<stgraph home>/models``: one folder per registry version (or run) ever resolved.

    A folder holds the model bundle and a manifest with its size and sha256, checked on every
    use: a damaged entry is fetched again. Entries appear by one atomic rename of a complete
    folder (filled in a temporary folder beside it), so a reader never sees a half-written one
    and two processes filling the same entry at once both succeed (one rename wins, the other
    process uses the winner's entry). Entries are immutable; deleting the folder, or any entry,
    is always safe and only costs a download.
    """
    from stgraph.tracking.store import stgraph_home

    return stgraph_home() / "models"


def _cached_bundle(pinned: _Pinned) -> Path:
    """The verified bundle file of ``pinned`` in the cache, downloaded first if needed."""
    entry = model_cache_dir() / pinned.key
    if _valid(entry):
        return entry / _BUNDLE
    return _fill(entry, pinned) / _BUNDLE


def _manifest(entry: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((entry / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _valid(entry: Path) -> bool:
    """Whether ``entry`` is complete and intact: manifest readable, bundle size and sha256 match."""
    manifest = _manifest(entry)
    if manifest is None or manifest.get("format") != CACHE_FORMAT:
        return False
    try:
        if (entry / _BUNDLE).stat().st_size != manifest.get("size"):
            return False
        return _sha256(entry / _BUNDLE) == manifest.get("sha256")
    except OSError:  # missing, or moved aside by a process that found it damaged
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fill(entry: Path, pinned: _Pinned) -> Path:
    """Download ``pinned`` into a temporary folder beside ``entry`` and rename it into place."""
    root = entry.parent
    root.mkdir(parents=True, exist_ok=True)
    _sweep(root)
    work = Path(tempfile.mkdtemp(prefix=f".fill-{entry.name}-", dir=root))
    try:
        bundle = _download_bundle(pinned, work / "download")
        staged = work / "entry"
        staged.mkdir()
        os.replace(bundle, staged / _BUNDLE)
        manifest = {
            "format": CACHE_FORMAT,
            "model_uri": pinned.uri,
            "download_uri": pinned.download_uri,
            "name": pinned.name,
            "version": pinned.version,
            "run_id": pinned.run_id,
            "source": pinned.source,
            "size": (staged / _BUNDLE).stat().st_size,
            "sha256": _sha256(staged / _BUNDLE),
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staged / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for path in (staged / _BUNDLE, staged / _MANIFEST, staged):
            _fsync(path)
        _publish(staged, entry)
        _fsync(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry


def _publish(staged: Path, entry: Path) -> None:
    """Rename ``staged`` to ``entry``; if another process got there first, keep its entry when
    intact, else move the damaged one aside and try again."""
    for _ in range(10):
        try:
            os.rename(staged, entry)  # fails if entry exists (and is not empty)
            return
        except OSError:
            if _valid(entry):
                return  # another process filled it meanwhile: same immutable content
        aside = entry.with_name(f".stale-{entry.name}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry, aside)  # atomic: readers see the damaged entry or none
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"Could not publish the model cache entry {entry}.")


def _sweep(root: Path) -> None:
    """Remove what processes that died mid-fill left behind (hours old)."""
    cutoff = time.time() - _STALE_AFTER_S
    for path in root.glob(".*-*"):
        if path.name.startswith((".fill-", ".stale-")):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _download_bundle(pinned: _Pinned, folder: Path) -> Path:
    """Download the model ``pinned`` names into ``folder``; the path of its bundle file."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    folder.mkdir(parents=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(pinned.download_uri, dst_path=str(folder)))
    except MlflowException as exc:
        raise InputError(f"Model URI '{pinned.uri}': cannot download the model ({exc}).") from None
    bundle = _bundle_in(local, Model)
    if bundle is None and pinned.run_id:
        try:
            bundle = Path(
                mlflow.artifacts.download_artifacts(
                    f"runs:/{pinned.run_id}/checkpoint/model.pt", dst_path=str(folder / "run")
                )
            )
        except MlflowException:
            bundle = None
    if bundle is None:
        raise InputError(
            f"Model URI '{pinned.uri}' names no stgraph model (no model bundle in the logged "
            "model or its run's checkpoint/model.pt)."
        )
    return bundle


def _bundle_in(local: Path, model_class) -> Path | None:
    """The bundle file of a downloaded pyfunc model folder, or None."""
    if local.is_file():
        return local if local.suffix == ".pt" else None
    try:
        flavor = model_class.load(str(local)).flavors.get("python_function", {})
    except Exception:  # not an MLflow model folder
        return None
    entry = (flavor.get("artifacts") or {}).get("bundle") or {}
    path = local / entry["path"] if entry.get("path") else None
    return path if path is not None and path.is_file() else None


def promote(name: str, version: str, alias: str) -> dict[str, Any]:
    """Point registry alias ``alias`` of model ``name`` at ``version``.

    Raises:
        InputError: unknown model or version, or a malformed alias.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    uri = f"models:/{name}/{version}"
    found = _version_of(client, uri, name, str(version), by_alias=False)
    previous = client.get_registered_model(name).aliases.get(alias)
    try:
        client.set_registered_model_alias(name, alias, str(found.version))
    except MlflowException as exc:
        raise InputError(f"Cannot set alias '{alias}' on model '{name}': {exc.message}") from None
    return {
        "name": name,
        "alias": alias,
        "version": str(found.version),
        "previous_version": None if previous is None else str(previous),
        "model_uri": f"models:/{name}@{alias}",
    }
