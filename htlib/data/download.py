"""Fetch one file over HTTP(S): progress bar, atomic rename, resume, and errors that say what to do.

A transfer writes into a temporary file unique to this writer, beside the target, and renames it
onto the target only once it is complete (and verified, when the caller passes `verify`), so the
target never holds half a file and two writers never share one. When a transfer breaks off, the
bytes received so far are parked as `<target>.part`; the next fetch of that target takes the part
over and asks the server for the rest only (HTTP Range). A server that ignores Range sends the
whole file again, and the transfer simply starts over.
"""

from __future__ import annotations

import errno
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

from tqdm.auto import tqdm

from htlib.data.base import DataError
from htlib.utils import write_atomic

CHUNK = 1 << 16
TIMEOUT_S = 30.0


class _Interrupted(Exception):
    """The body stopped before its end; `restart` when the bytes kept so far cannot be continued."""

    def __init__(self, reason: str, restart: bool = False):
        super().__init__(reason)
        self.restart = restart


def partial_path(dest: Path) -> Path:
    """Where an interrupted transfer of `dest` parks its bytes for the next run to continue."""
    return dest.with_name(dest.name + ".part")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    verify: Callable[[Path], None] | None = None,
    hint: str = "",
    attempts: int = 3,
    retry_wait: float = 1.0,
    timeout: float = TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest`; returns dest.

    verify(tmp) may raise (a DataError saying why) to refuse the complete file before it takes
    the name `dest`; what was fetched is then deleted. A transfer that breaks off is continued
    from where it stopped, up to `attempts` times, then kept as `<dest>.part` for the next run.
    Network, HTTP and disk problems raise DataError; `hint` is appended to the network ones.
    """
    dest = Path(dest)

    def transfer(tmp: Path) -> None:
        _take_over_partial(dest, tmp)
        try:
            _download_with_retries(url, tmp, dest, hint, attempts, retry_wait, timeout, progress)
        except BaseException as exc:
            if not _disk_full(exc):  # a full disk needs the space back more than a resumable part
                _park(tmp, dest)
            raise
        if verify is not None:
            verify(tmp)

    try:
        write_atomic(dest, transfer)
    except OSError as exc:  # network errors are DataErrors by now: this is the local disk
        raise DataError(_write_error(exc, dest)) from exc
    partial_path(dest).unlink(missing_ok=True)  # a part parked by another writer is stale now
    return dest


def _take_over_partial(dest: Path, tmp: Path) -> None:
    # os.replace is atomic: of two writers only one gets the part, the other starts from zero.
    try:
        os.replace(partial_path(dest), tmp)
    except FileNotFoundError:
        pass


def _park(tmp: Path, dest: Path) -> None:
    if tmp.is_file() and tmp.stat().st_size > 0:
        os.replace(tmp, partial_path(dest))


def _download_with_retries(url: str, tmp: Path, dest: Path, hint: str, attempts: int,
                           retry_wait: float, timeout: float, progress: bool) -> None:
    for attempt in range(1, attempts + 1):
        try:
            _download(url, tmp, dest.name, hint, timeout, progress)
            return
        except _Interrupted as exc:
            if exc.restart:
                os.truncate(tmp, 0)
            if attempt == attempts:
                kept = tmp.stat().st_size
                resume = (f"The {kept:,} bytes received are kept in {partial_path(dest)}; run the same "
                          f"command again to continue from there. " if kept else "")
                raise DataError(f"The download of {url} broke off ({exc}; tries: {attempts}). "
                                f"{resume}{hint}".rstrip()) from exc
            time.sleep(retry_wait * attempt)


def _download(url: str, tmp: Path, label: str, hint: str, timeout: float, progress: bool) -> None:
    """One request: continue tmp from its current size (or start over), to the end of the body."""
    offset = tmp.stat().st_size
    response = _open(url, offset, hint, timeout)
    with response, open(tmp, "r+b") as out:
        start = _body_start(response, offset)
        out.seek(start)
        out.truncate()
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = start + length if length is not None else None
        with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=label, disable=not progress, mininterval=0.5) as bar:
            received = _stream(response, out, bar)
    if length is not None and received != length:
        raise _Interrupted(f"{received:,} of {length:,} bytes arrived")


def _open(url: str, offset: int, hint: str, timeout: float):
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the part is not shorter than the file: it changed
            raise _Interrupted("the server has no bytes past the part kept", restart=True) from exc
        raise DataError(f"Could not download {url}: the server answered HTTP {exc.code} "
                        f"({exc.reason}). {hint}") from exc
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(url).netloc or url
        raise DataError(f"Could not connect to {host} to download {url} ({reason}): there may be no "
                        f"network, or the address is wrong. {hint}") from exc


def _body_start(response, offset: int) -> int:
    """Where in the file the response body begins: `offset` when the server honoured Range."""
    if offset and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise _Interrupted("the server sent another range than asked for", restart=True)
        return offset
    return 0  # a full answer (200): the server ignored Range, or there was nothing to resume


def _stream(response, out, bar) -> int:
    """Copy the body to `out`; returns the bytes copied. A broken connection is _Interrupted;
    a failed write is left to propagate as the OSError it is (full disk and the like)."""
    received = 0
    while True:
        try:
            chunk = response.read(CHUNK)
        except (HTTPException, OSError) as exc:  # IncompleteRead, reset, timeout
            raise _Interrupted(f"{type(exc).__name__}: {exc}") from exc
        if not chunk:
            return received
        out.write(chunk)
        bar.update(len(chunk))
        received += len(chunk)


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _write_error(exc: OSError, dest: Path) -> str:
    if _disk_full(exc):
        return (f"The disk is full: could not write {dest} ({exc}). Nothing was kept. Free some "
                f"space, or choose a data folder on another disk (--data-dir or HTLIB_DATA), and "
                f"run again.")
    return (f"Could not write {dest} ({exc}). Choose a writable data folder with --data-dir or "
            f"HTLIB_DATA, and run again.")
