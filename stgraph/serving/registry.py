"""Model resolution in the MLflow registry: a URI pinned to one version, and aliases."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stgraph.errors import InputError
from stgraph.serving.bundle import load_predictor
from stgraph.tasks.base import Predictor

URI_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"


# ----------------------------------------------------------------------------- model resolution
@dataclass
class ResolvedModel:
    """A model URI pinned to what it pointed at when it was resolved."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    predictor: Predictor


def _client():
    import mlflow

    from stgraph.tracking.store import tracking_uri

    # Progress bars of artifact downloads would clutter the output of a cron job.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient()


def _version_of(client, uri: str, name: str, ref: str, by_alias: bool):
    """The registry's `ModelVersion` for ``name@ref`` or ``name/ref``, or a clear `InputError`."""
    from mlflow.exceptions import MlflowException

    from stgraph.tracking.store import tracking_uri

    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise InputError(
            f"Model URI '{uri}': no registered model named '{name}' in the MLflow store "
            f"{tracking_uri()} (register one with `stgraph fit ... --register {name}`)."
        ) from None
    try:
        if by_alias:
            return client.get_model_version_by_alias(name, ref)
        if ref == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise InputError(f"Model URI '{uri}': model '{name}' has no versions.")
            return max(versions, key=lambda v: int(v.version))
        return client.get_model_version(name, ref)
    except MlflowException:
        if by_alias:
            aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(registered.aliases.items()))
            raise InputError(
                f"Model URI '{uri}': model '{name}' has no alias '{ref}' (aliases: "
                f"{aliases or 'none'}). Set one with `stgraph models promote {name} VERSION "
                f"{ref}`."
            ) from None
        raise InputError(f"Model URI '{uri}': model '{name}' has no version '{ref}'.") from None


def resolve_model(uri: str) -> ResolvedModel:
    """Pin ``uri`` to one registry version (or run) and load its model bundle.

    The bundle is taken from the *logged model* the URI names (its ``artifacts/model.pt``, found
    through the ``MLmodel`` file): the very files ``mlflow models serve`` loads, wherever the
    model was logged from. An alias is resolved once and the download uses the pinned version, so
    moving the alias mid-call cannot mix two versions. Logged models without the bundle artifact
    fall back to the run's ``checkpoint/model.pt``.

    Raises:
        InputError: a malformed URI, or a model, version, alias or run that does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    client = _client()
    name = version = run_id = None
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
        version, run_id = str(found.version), found.run_id
        download_uri = f"models:/{name}/{version}"
    elif uri.startswith("runs:/") and len(uri.split("/")) >= 3:
        run_id = uri.split("/")[1]
        try:
            client.get_run(run_id)
        except MlflowException:
            raise InputError(f"Model URI '{uri}': no run '{run_id}' in the MLflow store.") from None
        download_uri = uri
    else:
        raise InputError(f"Model URI '{uri}' is not one of {URI_HELP}.")
    with tempfile.TemporaryDirectory(prefix="stgraph-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(download_uri, dst_path=tmp))
        except MlflowException as exc:
            raise InputError(f"Model URI '{uri}': cannot download the model ({exc}).") from None
        bundle = _bundle_in(local, Model)
        if bundle is None and run_id:
            try:
                bundle = Path(
                    mlflow.artifacts.download_artifacts(
                        f"runs:/{run_id}/checkpoint/model.pt", dst_path=tmp
                    )
                )
            except MlflowException:
                bundle = None
        if bundle is None:
            raise InputError(
                f"Model URI '{uri}' names no stgraph model (no model bundle in the logged model "
                "or its run's checkpoint/model.pt)."
            )
        predictor = load_predictor(bundle)
    return ResolvedModel(uri, name, version, run_id, predictor)


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
