"""ModelZoo: a real HTTP server on loopback that serves checkpoint files as a model host does, for tests.

It answers GET and HEAD with Range support (206 with Content-Range, 416 past the end), records
every request with its Range header, and can hold its answers part-way: after hold(after=n) each
new answer sends its headers and n body bytes, then waits until release(), so a test can look at
or cancel a download in the middle whatever the machine's speed. chunk_delay_s slows every answer
down instead (for a progress bar a person should see move).

    with ModelZoo({"tiny.pkl": data}) as zoo:
        zoo.url_of("tiny.pkl")                # http://127.0.0.1:PORT/tiny.pkl
        zoo.hold(after=128 * 1024)            # answers stop after 128 KiB ...
        ...                                   # start a download; zoo.wait_held() once it is there
        zoo.release()                         # ... and go on
        zoo.ranges("tiny.pkl")                # [None, "bytes=131072-"]: the Range header of each GET
"""
from __future__ import annotations

import dataclasses
import http.server
import re
import threading
import time
from urllib.parse import unquote, urlsplit

HOLD_TIMEOUT_S = 120.0  # a held answer goes on by itself after this, so a failing test cannot hang its thread


@dataclasses.dataclass
class ZooRequest:
    method: str
    path: str  # as the client sent it
    range: str | None  # the Range header, if any
    status: int = 0
    start: int = 0  # offset of the first body byte of the answer
    sent: int = 0  # body bytes sent so far


class ModelZoo:
    """Serves `files` (name -> bytes; change the dict to change what it serves) on a free loopback port."""

    def __init__(self, files: dict[str, bytes], chunk: int = 16 * 1024, chunk_delay_s: float = 0.0) -> None:
        self.files = dict(files)
        self.chunk = chunk  # bytes written at a time
        self.chunk_delay_s = chunk_delay_s  # pause after each chunk
        self.requests: list[ZooRequest] = []
        self._lock = threading.Lock()
        self._hold_after: int | None = None
        self._gate = threading.Event()
        self._gate.set()
        self._held = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.zoo = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------- use

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def hold(self, after: int = 0) -> None:
        """Answers that start from now on send `after` body bytes, then wait for release()."""
        with self._lock:
            self._hold_after = after
            self._gate.clear()
            self._held.clear()

    def release(self) -> None:
        """Let held answers go on, and stop holding new ones."""
        with self._lock:
            self._hold_after = None
            self._gate.set()

    def wait_held(self, timeout: float = 30.0) -> bool:
        """True once an answer has sent its bytes and is waiting at the hold."""
        return self._held.wait(timeout)

    def ranges(self, name: str) -> list[str | None]:
        """The Range header of each GET of `name`, oldest first (None: the whole file was asked for)."""
        with self._lock:
            return [r.range for r in self.requests if r.method == "GET" and _name_of(r.path) == name]

    # --------------------------------------------------------- lifetime

    def start(self) -> "ModelZoo":
        self._thread = threading.Thread(target=self._server.serve_forever, name="model-zoo", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ModelZoo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------ handler side

    def _record(self, request: ZooRequest) -> int | None:
        """Log the request; the hold that applies to its answer."""
        with self._lock:
            self.requests.append(request)
            return self._hold_after

    def _wait_at_hold(self) -> None:
        self._held.set()
        self._gate.wait(HOLD_TIMEOUT_S)


def _name_of(path: str) -> str:
    return unquote(urlsplit(path).path).lstrip("/")


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet: tests read ModelZoo.requests instead
        pass

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        zoo: ModelZoo = self.server.zoo  # type: ignore[attr-defined]
        record = ZooRequest(self.command, self.path, self.headers.get("Range"))
        hold_after = zoo._record(record)
        data = zoo.files.get(_name_of(self.path))
        if data is None:
            record.status = 404
            self.send_error(404, "no such file")
            return
        start, end = 0, len(data) - 1
        if record.range is not None:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", record.range.strip())
            if match is None or int(match.group(1)) >= len(data):
                record.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(match.group(1))
            end = min(end, int(match.group(2))) if match.group(2) else end
            record.status = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            record.status = 200
            self.send_response(200)
        body = data[start:end + 1]
        record.start = start
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if with_body:
            self._send(zoo, body, record, hold_after)

    def _send(self, zoo: ModelZoo, body: bytes, record: ZooRequest, hold_after: int | None) -> None:
        pos = 0
        try:
            while pos < len(body):
                if hold_after is not None and pos >= hold_after:
                    self.wfile.flush()
                    zoo._wait_at_hold()
                    hold_after = None
                step = zoo.chunk if hold_after is None else min(zoo.chunk, hold_after - pos)
                self.wfile.write(body[pos:pos + step])
                pos += step
                record.sent = min(pos, len(body))
                if zoo.chunk_delay_s:
                    time.sleep(zoo.chunk_delay_s)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a cancelled download)
            pass
