"""Download a checkpoint with resume, size/hash verification, cancel and an atomic final rename.

The bytes go to `<dest>.part`; an interrupted or cancelled download resumes from there with an
HTTP Range request. Only a verified file is renamed to its final name, so a half-written file
never looks like a checkpoint. Messages name the server's host, never the whole URL (signed
URLs carry secrets in their query) and never a library's exception text.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests

CHUNK = 1 << 16  # small, so an interrupted transfer loses little and a cancel is seen within one chunk

ProgressFn = Callable[[int, int | None], None]


class DownloadError(Exception):
    pass


class DownloadCancelled(DownloadError):
    """Stopped on request; the partial file is kept, so the next download resumes it."""


class ChecksumMismatch(DownloadError):
    """The whole file arrived but is not the expected one; it was deleted."""


class Cancel:
    """A switch another thread flips to stop a download. Flipping it also shuts the connection's socket, so a
    download waiting for a silent server stops at once instead of after its read timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._response: requests.Response | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            response = self._response
        if response is not None:
            _shut(response)

    def _watch(self, response: requests.Response | None) -> None:
        with self._lock:
            self._response = response
            shut_now = self._cancelled and response is not None
        if shut_now:
            _shut(response)


def _shut(response: requests.Response) -> None:
    """Wake the thread blocked reading `response`: urllib3 >= 2.3 can shut the socket down from another thread;
    with an older one, closing the response is the best there is (the reader then waits for its timeout)."""
    try:
        shutdown = getattr(response.raw, "shutdown", None)
        if shutdown is not None:
            shutdown()
        else:
            response.close()
    except (OSError, ValueError, RuntimeError):  # already closed or released: nothing left to wake
        pass


def text_progress(stream=sys.stderr) -> ProgressFn:
    """A one-line progress bar that redraws at most ten times a second."""
    last = [0.0]

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and (total is None or done < total):
            return
        last[0] = now
        if total:
            frac = done / total
            bar = "#" * int(frac * 30)
            stream.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {done / 1e6:8.1f}/{total / 1e6:.1f} MB")
        else:
            stream.write(f"\r{done / 1e6:8.1f} MB")
        if total is not None and done >= total:
            stream.write("\n")
        stream.flush()

    return show


def partial_path(dest: Path) -> Path:
    """Where the bytes of `dest` collect until they are verified."""
    return dest.with_name(dest.name + ".part")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _total_size(response: requests.Response) -> int | None:
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def download(url: str, dest: str | os.PathLike, size: int | None = None, sha256: str | None = None,
             progress: ProgressFn | None = None, timeout: float = 30.0, cancel: Cancel | None = None,
             max_bytes: int | None = None) -> Path:
    """Fetch url to dest, resuming a previous partial download; verify size and hash when given.

    progress(done, total) is called as bytes arrive (total None when the server does not say); `cancel` stops
    the download with DownloadCancelled, keeping the partial file; `max_bytes` bounds a file of unknown size.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # a stale partial file longer than the real one: start over
        part.unlink()
        offset = 0
    host = urlsplit(url).hostname or "the server"
    if cancel is not None and cancel.cancelled:
        raise DownloadCancelled("download cancelled before it started")
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    receiving = False
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
            if cancel is not None:
                cancel._watch(r)
            try:
                receiving = True
                total = _receive(r, part, offset, size, max_bytes, host, progress, cancel)
            finally:
                if cancel is not None:
                    cancel._watch(None)
    except requests.RequestException as e:
        if cancel is not None and cancel.cancelled:
            raise DownloadCancelled("download cancelled; the partial file is kept and the next download "
                                    "resumes it") from None
        raise DownloadError(_interrupted(e, host, timeout, receiving)) from None
    if cancel is not None and cancel.cancelled:  # the shut socket read as the end of a body of unknown length
        raise DownloadCancelled("download cancelled; the partial file is kept and the next download resumes it")
    _verify(part, size if size is not None else total, sha256)
    os.replace(part, dest)
    return dest


def _receive(r: requests.Response, part: Path, offset: int, size: int | None, max_bytes: int | None, host: str,
             progress: ProgressFn | None, cancel: Cancel | None) -> int | None:
    """Append the response's body to the partial file; the file's whole size when the server says it."""
    if r.status_code == 416 and offset:  # nothing after the offset: the partial file is already complete
        return offset
    if r.status_code not in (200, 206):  # the standard phrase: the server's own is text of its choosing
        try:
            phrase = HTTPStatus(r.status_code).phrase
        except ValueError:  # a status outside the standard's list
            phrase = ""
        raise DownloadError(f"download failed: the server {host} answered HTTP {r.status_code} {phrase}".rstrip())
    if r.status_code == 200:
        offset = 0  # the server ignored the range: start over
    total = _total_size(r)
    if size is not None and total is not None and total != size:
        raise DownloadError(f"the server {host} offers a file of {total} bytes, expected {size}; "
                            f"the URL may point to another file")
    limit = size if size is not None else max_bytes
    if limit is not None and total is not None and total > limit:
        raise DownloadError(f"the server {host} offers {total} bytes, more than the limit of {limit} bytes")
    done = offset
    too_long = False
    with open(part, "ab" if offset else "wb") as f:
        if progress:
            progress(done, total)
        for chunk in r.iter_content(CHUNK):
            if cancel is not None and cancel.cancelled:
                raise DownloadCancelled("download cancelled; the partial file is kept and the next download "
                                        "resumes it")
            if limit is not None and done + len(chunk) > limit:
                too_long = True
                break
            f.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    if too_long:  # not the file we expect, so its bytes are no start for a resume
        part.unlink()
        raise DownloadError(f"the server {host} sent more than {limit} bytes; the partial file was removed")
    return total


def _interrupted(error: requests.RequestException, host: str, timeout: float, receiving: bool) -> str:
    """A library exception in words: its own text shows object reprs and connection pool internals."""
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                          requests.exceptions.MissingSchema)):
        return "download failed: the URL is not a valid http or https address"
    if isinstance(error, requests.exceptions.TooManyRedirects):
        return f"download failed: too many redirects from {host}"
    if isinstance(error, requests.exceptions.SSLError):
        return f"download failed: no trusted secure connection to {host} (certificate problem?)"
    if receiving:
        return f"download interrupted: the connection to {host} broke or stalled for {timeout:.0f} s; " \
               f"try again to resume"
    if isinstance(error, requests.Timeout):
        return f"download failed: no answer from {host} within {timeout:.0f} s; try again later"
    return f"download failed: could not connect to {host}; check the address and the network"


def _verify(part: Path, size: int | None, sha256: str | None) -> None:
    actual = part.stat().st_size
    if size is not None and actual != size:
        if actual > size:
            part.unlink()
        raise DownloadError(f"downloaded {actual} bytes, expected {size}; try again to resume")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise ChecksumMismatch(f"the checksum did not match: the file's sha256 is {digest}, expected "
                                   f"{sha256.lower()}; the file was deleted")
