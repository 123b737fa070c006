"""One entry point to get check-ins, by dataset card name or by file path."""

from __future__ import annotations

from pathlib import Path

from stgraph.data.cards import EVENT_DOMAINS, DatasetCard, cards_dir, load_card
from stgraph.data.checkins.formats import READERS
from stgraph.data.checkins.table import read_checkin_table
from stgraph.data.download import ensure_files
from stgraph.data.events import EventLog
from stgraph.data.paths import resolve_data_dir
from stgraph.errors import InputError

FILE_SUFFIXES = (".csv", ".parquet", ".pq")
EXPECTED = ("users", "locations", "events")


def open_checkins(
    spec: str, data_dir: str | Path | None = None, download: bool = False
) -> EventLog:
    """Load check-ins from a shipped card name (``"foursquare-nyc-stan"``) or a user file.

    Args:
        spec: a card name in ``datasets/`` (domain ``mobility``; its ``format`` picks the
            reader), or the path of a CSV/Parquet long table (see
            `stgraph.data.checkins.table`).
        data_dir: folder holding the card's files directly (``--data-dir``); default
            ``$STGRAPH_DATA_DIR/<name>`` or the user cache (see `resolve_data_dir`).
        download: fetch missing files from the card's URLs.

    Returns:
        The whole log as in the files (no filtering); ``attrs["dataset"]`` names the card and
        ``attrs["default_session"]`` holds the card's session rule (``options.session``), which
        `make_sessions` uses for ``session="auto"``.

    Raises:
        InputError: unknown name, a card of another domain, missing or broken files, or counts
            that differ from the card's ``expected``.
    """
    # A card name wins over a same-named folder in the working directory.
    is_card = "/" not in spec and (cards_dir() / f"{spec}.yaml").is_file()
    if not is_card and (Path(spec).expanduser().exists() or spec.lower().endswith(FILE_SUFFIXES)):
        return read_checkin_table(Path(spec).expanduser())
    card = load_card(spec)
    if card.domain not in EVENT_DOMAINS:
        raise InputError(
            f"Dataset '{card.name}' holds {card.domain} series, not check-ins; open it with "
            "the forecasting task (stgraph.data.sources.open_dataset)."
        )
    folder = resolve_data_dir(card.name, data_dir)
    _check_manual_files(card, folder)
    ensure_files(card, folder, download)
    log = READERS.get(card.format)(card, folder)
    check_expected(log, card, folder)
    log.attrs.update(dataset=card.name)
    if card.options.get("session"):
        log.attrs["default_session"] = card.options["session"]
    return log


def _check_manual_files(card: DatasetCard, folder: Path) -> None:
    """A missing file that can only be fetched by hand: say where to get it and where to put
    it (`ensure_files` only knows URLs)."""
    missing = [
        f
        for f in card.files
        if not f.optional and not f.urls and f.instructions and not (folder / f.name).is_file()
    ]
    if missing:
        steps = " ".join(f"{f.name}: {f.instructions.strip()}" for f in missing)
        raise InputError(
            f"Dataset '{card.name}' needs {', '.join(f.name for f in missing)} in {folder}, and "
            f"it has no direct download. {steps} Put the file(s) in {folder}, or pass "
            "--data-dir DIR (data_dir=) pointing at a folder that holds them."
        )


def check_expected(log: EventLog, card: DatasetCard, folder: Path) -> None:
    """Compare the users, locations and check-ins read with the card's ``expected`` counts."""
    found = {"users": log.num_users, "locations": log.num_locations, "events": log.num_events}
    wrong = [
        f"expected {card.expected[key]} {key}, found {found[key]}"
        for key in EXPECTED
        if key in card.expected and int(card.expected[key]) != found[key]
    ]
    if wrong:
        files = ", ".join(str(folder / f.name) for f in card.files)
        raise InputError(
            f"Dataset '{card.name}' (card {card.path or card.name}; files {files}): "
            f"{'; '.join(wrong)}. The files are a different version or were cut short; "
            "download them again."
        )
