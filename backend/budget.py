"""The decode budget: the bytes of decoded pixels that all requests in flight may hold together.

A PNG of a few hundred kilobytes can decode to 64 MiB and more, and a request keeps its decoded
image until it ends, so without a bound a handful of uploads at once could take gigabytes. Each
request reserves what its image costs (from the PNG header, before decoding) and gives it back
when it ends (the app's teardown); a request that finds no room waits a little for others to
finish, then is refused with 503 busy and Retry-After.
"""
from __future__ import annotations

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

    def used(self) -> int:
        with self._cv:
            return self._used
