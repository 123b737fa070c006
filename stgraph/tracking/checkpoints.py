"""The local epoch checkpoints of fits, ``$STGRAPH_HOME/runs/RUN_ID/`` (what ``--resume`` reads).

A fit whose MLflow run ends FINISHED removes its folder: the model and everything worth keeping
are in MLflow. A run that ends KILLED (Ctrl-C, SIGTERM) or FAILED keeps it, and so does a process
killed outright (its run stays RUNNING), so that ``stgraph fit --resume RUN_ID`` continues from
the last epoch. ``stgraph runs clean`` prunes the folders left behind: those of runs that are not
RUNNING, optionally only those last written some days ago.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stgraph.tracking.store import runs_dir, tracking_uri


def checkpoint_dir(run_id: str) -> Path:
    return runs_dir() / run_id


def remove_checkpoints(run_id: str) -> None:
    """Remove a run's checkpoint folder, if any (the run has FINISHED)."""
    shutil.rmtree(checkpoint_dir(run_id), ignore_errors=True)


@dataclass
class Folder:
    run_id: str
    path: Path
    status: str | None  # the MLflow run's status; None: no such run in this store
    size: int  # bytes
    modified: float  # the newest file's mtime (seconds since the epoch)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "status": self.status,
            "bytes": self.size,
            "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.modified)),
        }


def _folders() -> list[Folder]:
    import mlflow
    from mlflow.exceptions import MlflowException

    root = runs_dir()
    if not root.is_dir():
        return []
    client = mlflow.MlflowClient(tracking_uri())
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            status = client.get_run(path.name).info.status
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            status = None
        files = [f for f in path.rglob("*") if f.is_file()]
        stats = [f.stat() for f in files]
        modified = max((s.st_mtime for s in stats), default=path.stat().st_mtime)
        found.append(Folder(path.name, path, status, sum(s.st_size for s in stats), modified))
    return found


def clean(older_than_days: float | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove the checkpoint folders of runs that are not RUNNING (and, with
    ``older_than_days``, were last written at least that many days ago).

    Kept: RUNNING runs (a fit in progress, or one whose process was killed outright, which
    ``--resume`` continues) and folders of runs this MLflow store does not know (they may belong
    to another ``MLFLOW_TRACKING_URI``).
    """
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed, kept = [], []
    for folder in _folders():
        if folder.status is None:
            reason = f"no such run in the MLflow store {tracking_uri()}"
        elif folder.status in ("RUNNING", "SCHEDULED"):
            reason = folder.status
        elif cutoff is not None and folder.modified > cutoff:
            reason = f"written less than {older_than_days:g} days ago"
        else:
            reason = None
        if reason is not None:
            kept.append({**folder.as_dict(), "reason": reason})
            continue
        if not dry_run:
            shutil.rmtree(folder.path, ignore_errors=True)
        removed.append(folder.as_dict())
    return {
        "runs_dir": str(runs_dir()),
        "dry_run": dry_run,
        "removed": removed,
        "kept": kept,
        "freed_bytes": sum(entry["bytes"] for entry in removed),
    }
