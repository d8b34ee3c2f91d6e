"""Fetching Omniglot: verified, resumable, clear when it fails. Only 127.0.0.1 is ever contacted.

A local HTTP server serves the real files laid out as a download source expects
(<source>/images_background.zip, <source>/splits/vinyals/train.txt, ...) and can be told to
misbehave per file: cut the connection, ignore Range, flip a byte.
"""

from __future__ import annotations

import errno
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import png_data_offset

from htlib.cli import main
from htlib.data import DataError, download_omniglot
from htlib.data import download as download_module
from htlib.data.download import fetch, partial_path
from htlib.data.omniglot import PINS

TRAIN = "splits/vinyals/train.txt"


class _Handler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` support, and the faults set in server.faults[path]:
    cut_after (send that many body bytes, then drop the connection; `times` requests long),
    ignore_range, flip (offset of a byte to invert)."""

    def do_GET(self):
        name = self.path.lstrip("/")
        self.server.requests.append((name, self.headers.get("Range")))
        fault = self.server.faults.get(name, {})
        path = self.server.root / name
        if not path.is_file():
            self.send_error(404)
            return
        data = bytearray(path.read_bytes())
        if "flip" in fault:
            data[fault["flip"]] ^= 0xFF
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(asked.group(1)) if asked and not fault.get("ignore_range") else 0
        if asked and not fault.get("ignore_range"):
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = bytes(data[start:])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault.get("times", 1) > 0 and "cut_after" in fault:
            fault["times"] = fault.get("times", 1) - 1
            body = body[:fault["cut_after"]]  # HTTP/1.0: the connection closes after this
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def server(omniglot_data_dir):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root = omniglot_data_dir / "omniglot"
    httpd.requests, httpd.faults = [], {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(folder: Path) -> list[str]:
    """Temporary and partial files under folder (none may survive a finished download)."""
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".tmp", ".part"))


def test_clean_download_is_byte_identical_and_verified(server, tmp_path):
    root = download_omniglot(tmp_path, source=server.url, progress=False)
    assert root == tmp_path / "omniglot"
    for name in PINS:
        assert (root / name).read_bytes() == (server.root / name).read_bytes(), name
    assert _leftovers(tmp_path) == []
    assert sorted(n for n, _ in server.requests) == sorted(PINS) and all(r is None for _, r in server.requests)
    download_omniglot(tmp_path, source=server.url, progress=False)  # all there: nothing fetched
    assert len(server.requests) == len(PINS)


def test_truncated_response_keeps_a_resumable_part(server, tmp_path):
    server.faults[TRAIN] = {"cut_after": 1000, "times": 99}
    dest = tmp_path / "train.txt"
    with pytest.raises(DataError, match=r"broke off .*1,000 of .* bytes arrived") as info:
        fetch(f"{server.url}/{TRAIN}", dest, attempts=1, progress=False)
    assert str(partial_path(dest)) in str(info.value) and "again" in str(info.value)
    assert not dest.exists()
    assert partial_path(dest).read_bytes() == (server.root / TRAIN).read_bytes()[:1000]
    assert _leftovers(tmp_path) == ["train.txt.part"]


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.faults[TRAIN] = {"cut_after": 50_000}
    dest = tmp_path / "train.txt"
    with pytest.raises(DataError, match="broke off"):
        fetch(f"{server.url}/{TRAIN}", dest, attempts=1, progress=False)
    fetch(f"{server.url}/{TRAIN}", dest, progress=False)  # a later run continues the part
    assert server.requests == [(TRAIN, None), (TRAIN, "bytes=50000-")]
    assert dest.read_bytes() == (server.root / TRAIN).read_bytes()
    assert _leftovers(tmp_path) == []


def test_broken_transfer_is_retried_from_where_it_stopped(server, tmp_path):
    server.faults[TRAIN] = {"cut_after": 70_000}
    dest = fetch(f"{server.url}/{TRAIN}", tmp_path / "train.txt", retry_wait=0, progress=False)
    assert server.requests == [(TRAIN, None), (TRAIN, "bytes=70000-")]
    assert dest.read_bytes() == (server.root / TRAIN).read_bytes()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.faults[TRAIN] = {"ignore_range": True}
    dest = tmp_path / "train.txt"
    partial_path(dest).write_bytes(b"X" * 5000)  # appended to, these bytes would corrupt the file
    fetch(f"{server.url}/{TRAIN}", dest, progress=False)
    assert server.requests == [(TRAIN, "bytes=5000-")]
    assert dest.read_bytes() == (server.root / TRAIN).read_bytes()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["splits/vinyals/val.txt", "images_evaluation.zip"])
def test_flipped_byte_is_refused_and_deleted(server, tmp_path, name):
    source = server.root / name
    offset = png_data_offset(source) if name.endswith(".zip") else source.read_bytes().index(b"character") + 3
    server.faults[name] = {"flip": offset}
    with pytest.raises(DataError, match="is not the official Omniglot file") as info:
        download_omniglot(tmp_path, source=server.url, progress=False)
    message = str(info.value)
    assert Path(name).name in message and "Nothing was kept" in message and "HTLIB_SOURCE" in message
    root = tmp_path / "omniglot"
    assert not (root / name).exists() and _leftovers(tmp_path) == []
    assert (root / "images_background.zip").read_bytes() == (server.root / "images_background.zip").read_bytes()


def test_connection_refused_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"Could not connect to 127\.0\.0\.1:\d+ .*refused") as info:
        download_omniglot(tmp_path, source=f"http://127.0.0.1:{_closed_port()}", progress=False)
    assert "--source" in str(info.value) and str(tmp_path / "omniglot") in str(info.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_http_error_is_a_clear_error(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{server.url}/no/such/file.zip", tmp_path / "file.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_leaves_nothing_behind(server, tmp_path, monkeypatch):
    def fill_disk(response, out, bar):
        out.write(response.read(4096))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "_stream", fill_disk)
    with pytest.raises(DataError, match="disk is full.*Nothing was kept"):
        fetch(f"{server.url}/{TRAIN}", tmp_path / "train.txt", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the main job


@pytest.fixture
def fake_papermill(monkeypatch):
    """Record notebook runs instead of executing them (the notebooks have tests of their own)."""
    papermill = pytest.importorskip("papermill")
    runs = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda book, target, **kw: runs.append((book, kw)))
    return runs


def test_main_job_fetches_missing_omniglot_then_runs(server, tmp_path, monkeypatch, fake_papermill, capsys):
    monkeypatch.setenv("HTLIB_SOURCE", server.url)
    monkeypatch.setenv("HTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HTLIB_OFFLINE", raising=False)
    data = tmp_path / "data"
    code = main(["notebooks", "--profile", "ci", "--data-dir", str(data), "--out", str(tmp_path / "out"),
                 "--only", "01"])
    assert code == 0, capsys.readouterr().err
    for name in PINS:  # fetched, verified (else they would not have taken their names), complete
        assert (data / "omniglot" / name).read_bytes() == (server.root / name).read_bytes(), name
    assert "fetching it once" in capsys.readouterr().out
    [(book, kwargs)] = fake_papermill
    assert Path(book).name.startswith("01") and kwargs["parameters"]["data_dir"] == str(data.resolve())


def test_main_job_offline_never_downloads(server, tmp_path, monkeypatch, fake_papermill, capsys):
    monkeypatch.setenv("HTLIB_SOURCE", server.url)
    monkeypatch.setenv("HTLIB_OFFLINE", "1")
    code = main(["notebooks", "--profile", "ci", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "htlib download omniglot" in err and "HTLIB_OFFLINE" in err and str(tmp_path) in err
    assert server.requests == [] and fake_papermill == []
    assert not (tmp_path / "omniglot").exists()
