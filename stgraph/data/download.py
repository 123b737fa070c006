"""Make sure a dataset's files are in its data directory, downloading them when allowed.

Downloads go to ``<name>.part`` (resumed with an HTTP Range request when a previous attempt was
cut off), are checked against the card's sha256, and only then renamed to the final name, so a
final file is never partial or corrupt. Verified digests are remembered in ``.sha256-ok`` in the
data directory, keyed by size and mtime, so large files are hashed once rather than every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from stgraph.data.cards import DatasetCard, SourceFile
from stgraph.errors import InputError

SIDECAR = ".sha256-ok"
TIMEOUT_S = 20.0  # fail fast when offline; also the per-read stall limit
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sidecar(data_dir: Path) -> dict:
    try:
        data = json.loads((data_dir / SIDECAR).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _remember(data_dir: Path, name: str, path: Path, digest: str) -> None:
    entries = _read_sidecar(data_dir)
    entries[name] = {**_stamp(path), "sha256": digest}
    try:
        tmp = data_dir / (SIDECAR + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, data_dir / SIDECAR)
    except OSError:
        pass  # a read-only data folder only costs a re-hash next time


def verify_file(path: Path, sha256: str | None, data_dir: Path) -> bool:
    """Whether ``path`` matches ``sha256`` (always True when no digest is known).

    A digest verified before for the same size and mtime is trusted without re-hashing.
    """
    if not sha256:
        return True
    expected = sha256.lower()
    cached = _read_sidecar(data_dir).get(path.name)
    if isinstance(cached, dict) and cached.get("sha256") == expected:
        if {k: cached.get(k) for k in ("size", "mtime_ns")} == _stamp(path):
            return True
    actual = sha256_file(path)
    if actual != expected:
        return False
    _remember(data_dir, path.name, path, actual)
    return True


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "stgraph"})
    if have and not url.startswith("file:"):
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # The range starts at or past the end: the .part is complete or stale; start over.
            part.unlink()
            return _fetch(url, part, timeout)
        raise
    with response:
        status = getattr(response, "status", None)
        content_type = response.headers.get("Content-Type", "") or ""
        if content_type.startswith("text/html") and not part.name.endswith(".html.part"):
            raise OSError(
                "the server returned a web page instead of the file (the link may need a "
                "browser, e.g. a Google Drive or Baidu folder)"
            )
        resumed = status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with (
            open(part, "ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=not sys.stderr.isatty(),
                leave=False,
            ) as bar,
        ):
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    return None


def download_file(source: SourceFile, data_dir: Path, timeout: float = TIMEOUT_S) -> list[str]:
    """Try each mirror of ``source`` in turn; return the failure reasons ([] on success).

    The final file appears (atomically) only after its sha256 checked out.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / source.name
    part = data_dir / (source.name + ".part")
    failures = []
    for url in source.urls:
        try:
            _fetch(url, part, timeout)
        except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if source.sha256:
            actual = sha256_file(part)
            if actual != source.sha256.lower():
                part.unlink()  # a corrupt download must not be resumed or kept
                failures.append(f"{url}: sha256 {actual} differs from the card's {source.sha256}")
                continue
            os.replace(part, final)
            _remember(data_dir, final.name, final, actual)
        else:
            os.replace(part, final)
        return []
    return failures


def ensure_files(card: DatasetCard, data_dir: Path, download: bool) -> None:
    """Check that every required file of ``card`` is in ``data_dir``; fetch missing ones if allowed.

    Args:
        card: the dataset card (its ``files`` name the files, mirrors and digests).
        data_dir: the folder that holds the files directly.
        download: whether missing files may be downloaded from the card's URLs. Optional files are
            fetched on a best-effort basis and never cause an error.

    Raises:
        InputError: a required file is missing and could not be downloaded (the message lists
            which files to put where, and their URLs), or a present file fails its sha256 check.
    """
    data_dir = Path(data_dir)
    missing: list[SourceFile] = []
    failures: list[str] = []
    for source in card.files:
        path = data_dir / source.name
        if path.is_file():
            if not verify_file(path, source.sha256, data_dir):
                raise InputError(
                    f"Dataset '{card.name}': file {path} does not match the sha256 in the card "
                    f"({source.sha256}); it is corrupt, truncated or a different version. Delete "
                    f"it and download it again (`stgraph data download {card.name}`)."
                )
            continue
        if download and source.urls:
            reasons = download_file(source, data_dir)
            if not reasons:
                continue
            failures.extend(reasons)
        if not source.optional:
            missing.append(source)
    if not missing:
        return
    listing = "; ".join(
        f"{s.name} (from {' or '.join(s.urls)})"
        if s.urls
        else f"{s.name} ({s.instructions or 'no known URL'})"
        for s in missing
    )
    tried = f" Download attempts failed: {'; '.join(failures)}." if failures else ""
    hint = (
        "Download them there, or pass --data-dir DIR pointing at a folder that holds them."
        if download
        else f"Download them there, or run `stgraph data download {card.name}`, "
        "or pass --data-dir DIR."
    )
    raise InputError(
        f"Dataset '{card.name}' needs these files in {data_dir}: {listing}.{tried} {hint}"
    )
