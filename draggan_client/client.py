"""Client for the DragGAN daemon (`draggan serve`), shared by the Krita and GIMP plug-ins.

Standard library only and Python 3.8 syntax, because it runs inside the editors' own Python
(Krita 5.1's AppImage ships 3.8); each plug-in carries a copy of this package, so it imports nothing
from the project. Every failure, whether the daemon is not running, refuses the token or rejects
a request, is raised as DaemonError with a message that can be shown to the user as it is.

    client = DaemonClient("http://127.0.0.1:8765", token=None)
    made = client.generate(seed=42, model="demo")           # made["image"] is PNG bytes
    job = client.drag(made["session_id"], handles=[[60, 40]], targets=[[70, 30]], steps=200)
    final = client.wait(job["job_id"], on_progress=print)
    png = client.result(job["job_id"])
    again = client.drag(made["session_id"], ..., from_state=made["initial_state_id"])  # as if the first never ran
    fetch = client.download_model("stylegan2-ffhq-512x512")   # a download job: wait, cancel as above
"""
import base64
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence

DEFAULT_URL = "http://127.0.0.1:8765"
FINAL_STATES = ("done", "failed", "cancelled")


class DaemonError(Exception):
    """A failed call; str() is the user-facing message, status and code say what happened."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def normalize_url(url: Optional[str]) -> str:
    """What users type -> the daemon's base URL: 'host:port', 'http://host:port/' or '.../api/v1'
    all become 'http://host:port' (no trailing slash); empty means DEFAULT_URL."""
    url = (url or "").strip() or DEFAULT_URL
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    if url.endswith("/api/v1"):
        url = url[:-len("/api/v1")]
    return url


class DaemonClient:
    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout: float = 30.0,
                 work_timeout: float = 600.0):
        """timeout bounds quick calls; work_timeout bounds calls that load a model or render (generate)."""
        self.url = normalize_url(url)
        self.token = token
        self.timeout = timeout
        self.work_timeout = work_timeout
        # No proxies: a system proxy setting must not capture requests meant for the local daemon.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ API

    def health(self) -> Dict[str, Any]:
        return self._call("GET", "/health")

    def models(self) -> List[Dict[str, Any]]:
        """The models the daemon can use now (downloaded or built in): what a model menu offers."""
        return [m for m in self.catalogue() if m.get("downloaded", True)]  # daemons before downloads list only those

    def catalogue(self) -> List[Dict[str, Any]]:
        """Every model the daemon knows, downloaded or not: name, resolution, width, height, domain, licence,
        learning_rate, loaded, downloaded, downloading, downloadable, size (bytes or None), note."""
        return self._call("GET", "/models")["models"]

    def download_model(self, name: str) -> Dict[str, Any]:
        """Start downloading a catalogue model into the daemon's models folder; returns the download job (its
        "job_id" is what job, wait and cancel take; a cancelled download resumes where it stopped next time)."""
        return self._call("POST", "/models/" + _quote(name) + "/download")

    def generate(self, seed: int, model: Optional[str] = None, psi: Optional[float] = None) -> Dict[str, Any]:
        """A new session on the image of `seed`; the answer's "image" is PNG bytes."""
        body = {"seed": seed, "model": model, "psi": psi}
        made = self._call("POST", "/generate", _without_none(body), timeout=self.work_timeout)
        made["image"] = base64.b64decode(made["image"])
        return made

    def create_session(self, image_png: bytes, from_session: Optional[str] = None, model: Optional[str] = None,
                       region: Optional[Sequence[int]] = None, selection_bbox: Optional[Sequence[int]] = None,
                       margin: Optional[float] = None, invert: Optional[Dict[str, Any]] = None,
                       align: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A session on a layer (PNG, RGB or RGBA, at the layer's own size).

        from_session names the session whose picture the layer shows (maybe resized). Without it the
        layer is a real image: the daemon fits the region ([x, y, width, height] as given, or
        selection_bbox grown by margin, or the whole layer) into the model and starts an inversion
        job, whose id is the answer's "job_id" (wait for it before dragging); invert may set
        steps_w, steps_wplus, steps_pti, pti, preview_every. The same layer and settings again give
        the existing session ("reused": true, "job_id" only while its inversion still runs). align
        (instead of region / selection_bbox) frames the subject as the model was trained: the four
        landmarks {"left_eye", "right_eye", "mouth_left", "mouth_right"} ([x, y] layer pixels) or
        {"box": {"center", "width", "height", "angle"}} (docs/api.md, Alignment).
        """
        body = {"image": base64.b64encode(image_png).decode("ascii"), "from_session": from_session, "model": model,
                "region": list(region) if region is not None else None,
                "selection_bbox": list(selection_bbox) if selection_bbox is not None else None,
                "margin": margin, "invert": invert, "align": align}
        # the id in the query too: a load balancer routes by it to the daemon that holds the session
        # (docs/studio.md); daemons read the body's
        path = "/sessions" + ("?from_session=" + _quote(from_session) if from_session else "")
        return self._call("POST", path, _without_none(body), timeout=self.work_timeout)

    def session(self, session_id: str) -> Dict[str, Any]:
        return self._call("GET", "/sessions/" + _quote(session_id))

    def delete_session(self, session_id: str) -> Dict[str, Any]:
        return self._call("DELETE", "/sessions/" + _quote(session_id))

    def reset_session(self, session_id: str) -> Dict[str, Any]:
        """Reset to original: the session goes back to its initial state (drags forgotten, handles
        cleared, a real layer's inversion kept); returns the session (its "state_id" is then its
        "initial_state_id")."""
        return self._call("POST", "/sessions/" + _quote(session_id) + "/reset")

    def session_image(self, session_id: str) -> bytes:
        """PNG of the session's current state at the layer's size (real layers: the full layer)."""
        return self._call("GET", "/sessions/" + _quote(session_id) + "/image", raw=True, timeout=self.work_timeout)

    def drag(self, session_id: str, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]],
             mask_png: Optional[bytes] = None, from_state: Optional[str] = None, **options: Any) -> Dict[str, Any]:
        """Start a drag job; options: steps, preview_every, learning_rate, mask_lambda, w_layers, r1, r2,
        feather. Returns the job's status (its "job_id" is what wait, stop and cancel take; once done,
        its "state_id" names the state it made). from_state starts from that state of the session (a
        result's "state_id", or the session's "initial_state_id") instead of its current one; a state
        the daemon has dropped raises DaemonError with code "state_gone". On a real layer's session,
        points and mask are in the layer's pixels and the result is the full layer."""
        body = dict(options, handles=[list(p) for p in handles], targets=[list(p) for p in targets])
        if mask_png is not None:
            body["mask"] = base64.b64encode(mask_png).decode("ascii")
        if from_state is not None:
            body["from_state"] = from_state
        return self._call("POST", "/sessions/" + _quote(session_id) + "/drag", body)

    def job(self, job_id: str) -> Dict[str, Any]:
        return self._call("GET", "/jobs/" + _quote(job_id))

    def preview(self, job_id: str) -> Optional[bytes]:
        """The latest preview PNG, or None before the first."""
        try:
            return self._call("GET", "/jobs/" + _quote(job_id) + "/preview", raw=True)
        except DaemonError as e:
            if e.code == "no_preview":
                return None
            raise

    def result(self, job_id: str) -> bytes:
        return self._call("GET", "/jobs/" + _quote(job_id) + "/result", raw=True)

    def stop(self, job_id: str) -> Dict[str, Any]:
        """End the job after its current step, keeping the edit so far."""
        return self._call("POST", "/jobs/" + _quote(job_id) + "/stop")

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """End the job and put its session back as it was before (a download keeps its partial file)."""
        return self._call("POST", "/jobs/" + _quote(job_id) + "/cancel")

    def wait(self, job_id: str, on_progress: Optional[Callable[[Dict[str, Any]], None]] = None,
             on_preview: Optional[Callable[[bytes, Dict[str, Any]], None]] = None,
             stop_event: Any = None, cancel_event: Any = None, poll_interval: float = 0.25,
             timeout: Optional[float] = None) -> Dict[str, Any]:
        """Poll until the job ends and return its final status.

        on_progress(status) runs whenever the step (a download's bytes_done) or the state changes;
        on_preview(png, status) for each new preview. stop_event / cancel_event (e.g. threading.Event,
        anything with is_set()) let a UI thread stop or cancel the job; waiting goes on until the
        daemon confirms its end.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = (None, None, None)
        requested = None
        while True:
            status = self.job(job_id)
            progress = status.get("step", status.get("bytes_done"))  # download jobs count bytes, not steps
            preview_step = status.get("preview_step")
            if (status["state"], progress, preview_step) != seen:
                if on_progress is not None:
                    on_progress(status)
                if on_preview is not None and preview_step not in (None, seen[2]):
                    png = self.preview(job_id)
                    if png is not None:
                        on_preview(png, status)
                seen = (status["state"], progress, preview_step)
            if status["state"] in FINAL_STATES:
                return status
            requested = self._forward_request(job_id, requested, stop_event, cancel_event)
            if deadline is not None and time.monotonic() > deadline:
                raise DaemonError("job {} did not finish within {:.0f} s".format(job_id, timeout), code="timeout")
            time.sleep(poll_interval)

    # ------------------------------------------------------------ transport

    def _forward_request(self, job_id: str, requested: Optional[str], stop_event: Any, cancel_event: Any):
        """Send a cancel or stop once when the caller's event is set; a cancel overrides an earlier stop."""
        if cancel_event is not None and cancel_event.is_set() and requested != "cancel":
            try:
                self.cancel(job_id)
            except DaemonError as e:
                if e.code != "job_finished":
                    raise
            return "cancel"
        if stop_event is not None and stop_event.is_set() and requested is None:
            self.stop(job_id)
            return "stop"
        return requested

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None,
              raw: bool = False) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method, headers=headers)
        wait_s = self.timeout if timeout is None else timeout
        try:
            with self._opener.open(request, timeout=wait_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            raise self._http_error(e) from None
        except (socket.timeout, TimeoutError):
            raise self._timeout_error(wait_s) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise self._timeout_error(wait_s) from None
            raise self._unreachable(e.reason) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        if raw:
            return payload
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError:
            raise DaemonError("the program at {} did not answer like the DragGAN daemon (no JSON); is something "
                              "else using that port?".format(self.url)) from None

    def _http_error(self, error: urllib.error.HTTPError) -> DaemonError:
        try:
            detail = json.loads(error.read().decode("utf-8"))["error"]
            code, message = detail["code"], detail["message"]
        except (ValueError, KeyError, TypeError, OSError):
            code, message = None, "the daemon at {} answered HTTP {} {}".format(self.url, error.code, error.reason)
        if error.code == 401:
            message = ("the daemon refused the token; check the token in the plug-in settings" if self.token else
                       "the daemon needs a token; enter the one `draggan serve` printed in the plug-in settings")
        return DaemonError(message, status=error.code, code=code)

    def _timeout_error(self, seconds: float) -> DaemonError:
        return DaemonError("the DragGAN daemon at {} did not answer within {:.0f} s".format(self.url, seconds),
                           code="timeout")

    def _unreachable(self, reason: Any) -> DaemonError:
        return DaemonError("cannot reach the DragGAN daemon at {} \u2014 is `draggan serve` running? ({})".format(
            self.url, reason), code="unreachable")


def _quote(ident: str) -> str:
    return urllib.parse.quote(ident, safe="")


def _without_none(body: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
