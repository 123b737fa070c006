"""Downloads against a local HTTP server with Range support (no network) and file:// URLs."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from typing import ClassVar

import pytest

from stgraph.data import download
from stgraph.data.cards import DatasetCard, SourceFile
from stgraph.data.download import SIDECAR, ensure_files
from stgraph.errors import InputError

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /data.bin (honouring Range), a web page at /page, 404 elsewhere."""

    ranges: ClassVar[list[str | None]] = []

    def do_GET(self):
        type(self).ranges.append(self.headers.get("Range"))
        if self.path == "/page":
            body = b"<html>sign in</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path != "/data.bin":
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            start = int(wanted[len("bytes=") :].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _card(*files: SourceFile) -> DatasetCard:
    return DatasetCard(name="toy", format="tabular", files=files, frequency="5min")


def test_download_verifies_and_renames(tmp_path, server):
    ensure_files(_card(SourceFile("data.bin", (f"{server}/data.bin",), DIGEST)), tmp_path, True)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert DIGEST in (tmp_path / SIDECAR).read_text()


def test_resume_uses_range(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:30000])
    _Handler.ranges.clear()
    ensure_files(_card(SourceFile("data.bin", (f"{server}/data.bin",), DIGEST)), tmp_path, True)
    assert _Handler.ranges == ["bytes=30000-"]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_complete_part_file_restarts_after_416(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    ensure_files(_card(SourceFile("data.bin", (f"{server}/data.bin",), DIGEST)), tmp_path, True)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_sha_mismatch_leaves_no_file(tmp_path, server):
    card = _card(SourceFile("data.bin", (f"{server}/data.bin",), "0" * 64))
    with pytest.raises(InputError) as info:
        ensure_files(card, tmp_path, True)
    message = str(info.value)
    assert f"needs these files in {tmp_path}: data.bin (from {server}/data.bin)" in message
    assert "sha256" in message and "differs" in message
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_mirrors_tried_in_turn(tmp_path, server):
    urls = (f"{server}/missing.bin", f"{server}/data.bin")
    ensure_files(_card(SourceFile("data.bin", urls, DIGEST)), tmp_path, True)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_web_page_is_refused(tmp_path, server):
    card = _card(SourceFile("data.h5", (f"{server}/page",)))
    with pytest.raises(InputError, match="returned a web page instead of the file"):
        ensure_files(card, tmp_path, True)
    assert not (tmp_path / "data.h5").exists()


def test_file_url(tmp_path):
    source = tmp_path / "origin.bin"
    source.write_bytes(PAYLOAD)
    target = tmp_path / "target"
    ensure_files(_card(SourceFile("data.bin", (source.as_uri(),), DIGEST)), target, True)
    assert (target / "data.bin").read_bytes() == PAYLOAD


def test_offline_fails_fast(tmp_path):
    card = _card(SourceFile("data.bin", ("http://127.0.0.1:9/data.bin",), DIGEST))
    started = time.monotonic()
    with pytest.raises(InputError, match=r"data\.bin \(from http://127\.0\.0\.1:9/data\.bin\)"):
        ensure_files(card, tmp_path, True)
    assert time.monotonic() - started < 10


def test_missing_without_download_lists_files(tmp_path):
    card = _card(
        SourceFile("a.h5", ("https://example.org/a.h5",)),
        SourceFile("b.pkl"),
        SourceFile("c.csv", ("https://example.org/c.csv",), optional=True),
    )
    with pytest.raises(InputError) as info:
        ensure_files(card, tmp_path, False)
    message = str(info.value)
    assert message.startswith(f"Dataset 'toy' needs these files in {tmp_path}: ")
    assert "a.h5 (from https://example.org/a.h5); b.pkl (no known URL)" in message
    assert "c.csv" not in message and "stgraph data download toy" in message


def test_present_file_sha_cached_and_checked(tmp_path, monkeypatch):
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    card = _card(SourceFile("data.bin", (), DIGEST))
    ensure_files(card, tmp_path, False)

    def no_hashing(path):
        raise AssertionError("re-hashed a verified file")

    monkeypatch.setattr(download, "sha256_file", no_hashing)
    ensure_files(card, tmp_path, False)  # served from the sidecar
    monkeypatch.undo()
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:-1] + b"x")  # same size
    os.utime(tmp_path / "data.bin", ns=(1_000_000_000, 1_000_000_000))  # surely a new mtime
    with pytest.raises(InputError, match=r"data\.bin does not match the sha256"):
        ensure_files(card, tmp_path, False)
