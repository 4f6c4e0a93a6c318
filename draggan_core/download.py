"""Download a checkpoint with resume, size/hash verification and an atomic final rename.

The bytes go to `<dest>.part`; an interrupted download resumes from there with an HTTP Range
request. Only a verified file is renamed to its final name, so a half-written file never looks
like a checkpoint.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

import requests

CHUNK = 1 << 16  # small, so an interrupted transfer loses little

ProgressFn = Callable[[int, int | None], None]


class DownloadError(Exception):
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _total_size(response: requests.Response, offset: int) -> int | None:
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def download(url: str, dest: str | os.PathLike, size: int | None = None, sha256: str | None = None,
             progress: ProgressFn | None = None, timeout: float = 30.0) -> Path:
    """Fetch url to dest, resuming a previous partial download; verify size and hash when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
            if r.status_code == 416 and offset:  # the part file is already complete
                total = offset
            elif r.status_code not in (200, 206):
                raise DownloadError(f"download failed: HTTP {r.status_code} from {url}")
            else:
                if r.status_code == 200:
                    offset = 0  # server ignored the range: start over
                total = _total_size(r, offset)
                with open(part, "ab" if offset else "wb") as f:
                    done = offset
                    for chunk in r.iter_content(CHUNK):
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
    except requests.RequestException as e:
        raise DownloadError(f"download interrupted ({e}); run the command again to resume") from None
    _verify(part, size if size is not None else total, sha256)
    os.replace(part, dest)
    return dest


def _verify(part: Path, size: int | None, sha256: str | None) -> None:
    actual = part.stat().st_size
    if size is not None and actual != size:
        if actual > size:
            part.unlink()
        raise DownloadError(f"downloaded {actual} bytes, expected {size}; run the command again to resume")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(f"checksum mismatch (sha256 {digest}, expected {sha256}); the partial file was removed")
