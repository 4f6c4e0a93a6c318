"""The decode budget: the bytes of decoded pixels that all requests in flight may hold together.

A PNG of a few hundred kilobytes can decode to 64 MiB and more, and a request keeps its decoded
image until it ends, so without a bound a handful of uploads at once could take gigabytes. Each
request reserves what its image costs (from the PNG header, before decoding) and gives it back
when it ends (the app's teardown); a request that finds no room waits a little for others to
finish, then is refused with 503 busy and Retry-After. When a request's images are freed, glibc
is asked to hand the memory back, or each request thread's arena would keep its own peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

from flask import g

from .errors import busy

MIB = 1024 ** 2
RETRY_AFTER_S = 5  # a refused request's Retry-After: about how long an upload's request takes


class DecodeBudget:
    def __init__(self, limit_bytes: int, wait_s: float):
        self.limit, self.wait_s = limit_bytes, wait_s
        self._used = 0
        self._cv = threading.Condition()

    def reserve(self, nbytes: int) -> None:
        """Hold nbytes for the current request until it ends; 503 busy when no room frees up in
        wait_s. An image that costs more than the whole budget waits until it has it to itself."""
        need = min(nbytes, self.limit)
        with self._cv:
            if not self._cv.wait_for(lambda: self._used + need <= self.limit, self.wait_s):
                raise busy("busy", f"the daemon is decoding other images ({self._used / MIB:.3g} MiB of its "
                                   f"{self.limit / MIB:.3g} MiB for decoded pixels are taken; this one needs "
                                   f"{need / MIB:.3g} MiB)", retry_after=RETRY_AFTER_S, status=503)
            self._used += need
        g.decoded_bytes = g.get("decoded_bytes", 0) + need

    def release_request(self) -> None:
        """Give back what the current request reserved (called when it ends, whatever its outcome)."""
        held = g.pop("decoded_bytes", 0)
        if held:
            with self._cv:
                self._used -= held
                self._cv.notify_all()
            give_back_freed_memory()

    def used(self) -> int:
        """Bytes reserved now."""
        with self._cv:
            return self._used


def give_back_freed_memory() -> None:
    """Return freed heap memory to the system. Pillow allocates images in 16 MiB blocks, which glibc
    serves from the allocating thread's own arena and keeps there once freed, so without this the
    daemon's RSS grows towards the sum of every request thread's peak, not the budget's."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def find_malloc_trim():
    """glibc's malloc_trim; None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


MALLOC_TRIM = find_malloc_trim()
