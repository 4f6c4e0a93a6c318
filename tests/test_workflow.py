"""The conversation with the daemon that both plug-ins carry (draggan_client/workflow.py): which session
shows a layer (reused, made from another, regenerated from its seed, or the layer inverted), the drag
request, retries while the daemon is busy, the words for progress and failures, and what a layer
remembers. Most tests talk to a fake daemon that answers with the real daemon's error codes; the last
ones talk to real `draggan serve` processes over loopback HTTP, one of them restarted between two drags."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from dataclasses import replace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "gimp"))
from draggan_client import workflow  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402
from draggan_client.pngcodec import decode_png, encode_png, png_size  # noqa: E402
from daemon_process import MODEL, running_daemon, write_tiny_model  # noqa: E402

W, H = 200, 150  # the real layer the fake daemon inverts
REGION = [50, 20, 100, 100]  # the part of it the daemon fitted
DRAG = ((70.0, 40.0), (80.0, 45.0))


def no_sleep(seconds):
    raise AssertionError("a test must not wait in real time")


# ----------------------------------------------------------------------------- a fake daemon

class FakeDaemon:
    """The daemon's answers, with its error codes. Sessions are dicts as GET /sessions/<id> gives them.

    from_session copies a session unless its id is in `refuse` (409 different_picture); a layer sent
    without from_session becomes session "real" (the region REGION of a WxH layer), inverted by job
    "inv" unless `reused`; generate() makes "new" (gen_size); drag() refuses `busy` times with
    `busy_code`, then moves the session's first handle to (12, 34)."""

    url = "http://fake"

    def __init__(self, sessions=None, refuse=(), reused=False, busy=0, busy_code="session_busy",
                 invert_state="done", gen_size=(64, 64), jobs=None):
        self.sessions = {k: dict(v) for k, v in (sessions or {}).items()}
        self.refuse, self.reused, self.busy, self.busy_code = refuse, reused, busy, busy_code
        self.invert_state, self.gen_size = invert_state, gen_size
        self.jobs = dict(jobs or {})  # what job() still knows
        self.calls = []
        self.sent = []  # every PNG sent with create_session
        self.real = {"session_id": "real", "model": "tiny", "width": W, "height": H, "handles": [], "targets": [],
                     "region": dict(zip(("x", "y", "width", "height"), REGION)), "ready": True,
                     "invert_job": "inv"}

    def session(self, sid):
        self.calls.append(("session", sid))
        if sid not in self.sessions:
            raise DaemonError("unknown session {}".format(sid), 404, "unknown_session")
        return dict(self.sessions[sid])

    def create_session(self, png, from_session=None, **real):
        self.calls.append(("create_session", from_session) + ((real,) if real else ()))
        self.sent.append(png)
        if from_session is not None:
            if from_session not in self.sessions:
                raise DaemonError("unknown session {}".format(from_session), 404, "unknown_session")
            if from_session in self.refuse:
                raise DaemonError("the image differs from session {}'s picture".format(from_session), 409,
                                  "different_picture")
            width, height = png_size(png)
            sid = "copy-of-" + from_session
            self.sessions[sid] = dict(self.sessions[from_session], session_id=sid, width=width, height=height)
            return dict(self.sessions[sid], reused=False, job_id=None)
        self.sessions["real"] = dict(self.real, model=real.get("model") or "tiny", ready=self.reused)
        return dict(self.sessions["real"], reused=self.reused, job_id="inv")

    def generate(self, seed, model=None, psi=None):
        self.calls.append(("generate", seed, model, psi))
        width, height = self.gen_size
        self.sessions["new"] = {"session_id": "new", "model": model or "tiny", "width": width, "height": height,
                                "handles": [], "targets": [], "region": None, "ready": True, "invert_job": None}
        return dict(self.sessions["new"], seed=seed, psi=psi, image=b"png")

    def drag(self, sid, handles, targets, mask_png=None, **options):
        self.calls.append(("drag", sid, dict(options, handles=handles, targets=targets, mask=mask_png)))
        if sid not in self.sessions:
            raise DaemonError("unknown session {}".format(sid), 404, "unknown_session")
        if self.busy:
            self.busy -= 1
            raise DaemonError("session {} already has job x".format(sid), 409, self.busy_code)
        moved = [[12.0, 34.0]] + [list(h) for h in handles[1:]]
        self.sessions[sid] = dict(self.sessions[sid], handles=moved, targets=[list(t) for t in targets])
        return {"job_id": "drag-1", "kind": "drag", "state": "queued", "session_id": sid}

    def wait(self, job_id, on_progress=None, **kw):
        self.calls.append(("wait", job_id))
        if job_id == "inv":
            final = {"job_id": "inv", "kind": "invert", "state": self.invert_state, "step": 30, "max_steps": 30,
                     "inversion": {"stage": "pti", "stage_step": 10, "stage_steps": 10, "psnr": 31.25}}
            if self.invert_state == "done":
                self.sessions["real"]["ready"] = True
        else:
            final = {"job_id": job_id, "kind": "drag", "state": "done", "step": 7, "max_steps": 7,
                     "reason": "reached", "changed": {"x": 60, "y": 30, "width": 20, "height": 10}}
        if on_progress is not None:
            on_progress(final)
        return final

    def job(self, job_id):
        self.calls.append(("job", job_id))
        if job_id not in self.jobs:
            raise DaemonError("unknown job {}".format(job_id), 404, "unknown_job")
        return self.jobs[job_id]

    def result(self, job_id):
        sid = [c[1] for c in self.calls if c[0] == "drag"][-1]
        session = self.sessions[sid]
        return encode_png(session["width"], session["height"], 4, bytes(session["width"] * session["height"] * 4))

    def made(self, kind):
        return [c for c in self.calls if c[0] == kind]


def generated(handles=(), session_id="s1", origin=workflow.GENERATED, seed=5, **kw):
    """The record of a generated (or dragged) 64x64 picture, as the plug-in wrote it."""
    points = [list(map(float, h)) for h in handles]
    return workflow.SessionRecord(session_id, "http://fake", 64, 64, origin, model="tiny", seed=seed, psi=0.7,
                                  handles=points, targets=[list(p) for p in points], **kw)


def generated_session(handles=(), width=64, height=64):
    points = [list(map(float, h)) for h in handles]
    return {"session_id": "s1", "model": "tiny", "width": width, "height": height, "handles": points,
            "targets": [list(p) for p in points], "region": None, "ready": True, "invert_job": None}


def picture(width=64, height=64, drags=((10.0, 10.0), (20.0, 12.0)), trusted=True, **kw):
    """An Edit of an opaque layer; drags: one (handle, target) pair, or a list of them."""
    if drags and not isinstance(drags[0][0], tuple):
        drags = [drags]
    return workflow.Edit(width, height, bytes(width * height * 4), 4, list(drags), trusted=trusted, **kw)


def layer_pixels():
    """W x H RGBA bytes with every byte value and alpha that is not 255 everywhere."""
    return bytes(range(256)) * (W * H * 4 // 256) + bytes(W * H * 4 % 256)


def selection(box=(60, 30, 40, 30)):
    x, y, w, h = box
    mask = np.zeros((H, W), np.uint8)
    mask[y:y + h, x:x + w] = 255
    return mask


def real_layer(mask=None, model="tiny", invert=None, trusted=True, pixels=None, feather=6):
    """An Edit of the W x H real layer with one drag inside REGION."""
    return workflow.Edit(W, H, pixels if pixels is not None else layer_pixels(), 4, [DRAG],
                         mask.tobytes() if mask is not None else None,
                         workflow.DragSettings(steps=7, mask_lambda=20.0, preview_every=0, feather=feather),
                         model=model, invert=workflow.invert_settings(20, 0, 10, 0) if invert is None else invert,
                         trusted=trusted)


def real_record(handles=((1.0, 2.0),), region=REGION, edit=None, **kw):
    """What a real layer's result remembers (fields as finish() writes them, fingerprint as an older
    Krita annotation had it)."""
    edit = edit or real_layer(selection())
    points = [list(h) for h in handles]
    fields = dict(model="tiny", handles=points, targets=[list(p) for p in points], region=list(region),
                  selection_bbox=edit.box(), invert=edit.invert)
    fields.update(kw)
    return workflow.SessionRecord("real", "http://fake", W, H, workflow.REAL, **fields)


def run(client, record, edit):
    """workflow.run with the job ids and statuses it reports."""
    jobs, statuses = [], []
    finished = workflow.run(client, record, edit, on_status=statuses.append, on_job=jobs.append, sleep=no_sleep)
    return finished, jobs, statuses


# ----------------------------------------------------------------------------- which session shows the layer

def test_a_record_whose_session_shows_the_picture_is_reused():
    client = FakeDaemon({"s1": generated_session([(1, 2)])})
    assert workflow.find_session(client, generated([(1, 2)]), picture()) == ("s1", None)
    assert client.calls == [("session", "s1")]


def test_a_generated_picture_is_dragged_on_its_session_and_its_result_remembers_the_seed():
    client = FakeDaemon({"s1": generated_session([(1, 2)])})
    edit = picture(model="other", invert={"steps_w": 3}, settings=workflow.DragSettings(steps=5, feather=8))
    done, jobs, statuses = run(client, generated([(1, 2)]), edit)
    (drag,) = client.made("drag")
    assert drag[1] == "s1" and "feather" not in drag[2]  # feather is only for real layers
    assert not client.made("create_session") and not client.made("generate") and jobs == ["drag-1"]
    assert not done.real and done.psnr is None and done.final["state"] == "done"
    assert done.record == workflow.SessionRecord("s1", "http://fake", 64, 64, workflow.DRAGGED, model="tiny",
                                                 seed=5, psi=0.7, handles=[[12.0, 34.0]], targets=[[20.0, 12.0]])
    assert [s["kind"] for s in statuses] == ["drag"]


def test_an_older_or_scaled_picture_gets_a_session_made_from_the_records():
    client = FakeDaemon({"s1": generated_session([(9, 9)])})  # the session moved on (a later drag)
    assert workflow.find_session(client, generated([]), picture()) == ("copy-of-s1", None)
    assert client.calls[-1] == ("create_session", "s1")
    client = FakeDaemon({"s1": generated_session([(9, 9)])})  # the layer was scaled
    assert workflow.find_session(client, generated([(9, 9)]), picture(128, 128)) == ("copy-of-s1", None)
    assert png_size(client.sent[-1]) == (128, 128)  # the layer as it is now
    assert not client.made("generate")


def test_a_generated_picture_whose_session_is_gone_or_moved_on_is_regenerated_from_its_seed():
    client = FakeDaemon({"s1": generated_session([(9, 9)])}, refuse=("s1",))  # moved on, other pixels
    assert workflow.find_session(client, generated([]), picture()) == ("new", None)
    assert client.calls[-1] == ("generate", 5, "tiny", 0.7)
    client = FakeDaemon()  # the daemon restarted
    assert workflow.find_session(client, generated([]), picture()) == ("new", None)
    assert client.made("generate") == [("generate", 5, "tiny", 0.7)]
    client = FakeDaemon()  # ... and the layer was scaled: the regenerated picture is compared by the daemon
    assert workflow.find_session(client, generated([]), picture(32, 32)) == ("copy-of-new", None)
    assert client.calls[-1] == ("create_session", "new")
    client = FakeDaemon()  # the whole drag after a restart: on the regenerated session
    done, jobs, _ = run(client, generated([]), picture())
    assert client.made("drag")[0][1] == "new" and jobs == ["drag-1"] and not done.real
    assert (done.record.session_id, done.record.origin, done.record.seed, done.record.psi) == \
        ("new", workflow.DRAGGED, 5, 0.7)


def test_other_pictures_need_inversion():
    """None: the layer goes to the daemon as a real layer."""
    client = FakeDaemon()
    assert workflow.find_session(client, None, picture()) is None
    assert client.calls == []
    client = FakeDaemon()  # a dragged picture whose session is gone: its seed no longer makes it
    assert workflow.find_session(client, generated([(1, 1)], origin=workflow.DRAGGED), picture()) is None
    assert not client.made("generate")
    client = FakeDaemon()  # a generated picture without a seed (it cannot be made again)
    assert workflow.find_session(client, generated([], seed=None), picture()) is None
    assert not client.made("generate")
    client = FakeDaemon(refuse=("new",))  # a scaled generated layer that differs from its seed's picture
    assert workflow.find_session(client, generated([]), picture(32, 32)) is None
    assert client.calls[-1] == ("create_session", "new")
    client = FakeDaemon()  # a real layer whose session is gone (the daemon restarted): inverted anew
    assert workflow.find_session(client, real_record(), real_layer(selection())) is None
    assert client.calls == [("session", "real")]
    client = FakeDaemon({"s1": generated_session()})  # from_session refused by a daemon without inversion

    def old_daemon(png, from_session=None, **real):
        raise DaemonError("this daemon cannot edit images it did not generate", 501, "inversion_unavailable")

    client.create_session = old_daemon
    assert workflow.find_session(client, generated([], seed=None), picture(32, 32)) is None


@pytest.mark.parametrize("where", ["from_session", "session", "generate"])
def test_unexpected_daemon_errors_are_not_taken_for_other_pictures(where):
    client = FakeDaemon({"s1": generated_session([(3, 3)])} if where != "generate" else {})
    broken = {"from_session": ("create_session", DaemonError("token refused", 401, "unauthorized")),
              "session": ("session", DaemonError("internal error (request id 1)", 500, "internal")),
              "generate": ("generate", DaemonError("model 'tiny' is not installed", 404, "unknown_model"))}
    name, error = broken[where]

    def fail(*args, **kwargs):
        raise error

    setattr(client, name, fail)
    with pytest.raises(DaemonError) as e:
        workflow.run(client, generated([]), picture(), sleep=no_sleep)
    assert e.value is error
    assert not client.made("drag")


def test_a_daemon_without_inversion_says_so_for_a_real_layer():
    client = FakeDaemon()

    def old_daemon(png, from_session=None, **real):
        raise DaemonError("this daemon cannot edit images it did not generate", 501, "inversion_unavailable")

    client.create_session = old_daemon
    with pytest.raises(DaemonError) as e:
        workflow.run(client, None, real_layer(), sleep=no_sleep)
    assert e.value.code == "inversion_unavailable"  # the plug-ins explain it (GIMP: draggan_logic.friendly)


def test_a_drag_error_that_is_not_about_the_session_is_reported_as_it_is():
    client = FakeDaemon({"s1": generated_session([(1, 2)])})

    def bad_drag(*args, **kwargs):
        raise DaemonError("handle (2, 2) lies outside the region", 400, "bad_points")

    client.drag = bad_drag
    with pytest.raises(DaemonError, match="outside the region"):
        workflow.run(client, generated([(1, 2)]), picture(), sleep=no_sleep)
    assert not client.made("create_session") and not client.made("generate")


def test_a_session_lost_between_the_check_and_the_drag_is_made_anew():
    client = FakeDaemon({"s1": generated_session([(1, 2)])})
    drag = client.drag

    def vanish_once(sid, *args, **kwargs):
        if sid == "s1":
            del client.sessions["s1"]
        return drag(sid, *args, **kwargs)

    client.drag = vanish_once
    done, jobs, _ = run(client, generated([(1, 2)]), picture())
    assert client.made("create_session")[0][1] is None  # sent as a real layer
    assert jobs == ["inv", "drag-1"] and done.real


def test_the_images_record_is_used_only_after_the_daemon_compared_the_pixels():
    """An untrusted record (the image's, read for a layer without its own) is never taken as it is."""
    client = FakeDaemon({"s1": generated_session()})
    assert workflow.find_session(client, generated([]), picture(trusted=False)) == ("copy-of-s1", None)
    assert client.calls[-1] == ("create_session", "s1")
    client = FakeDaemon({"s1": generated_session()}, refuse=("s1",))  # other pixels: no silent regeneration,
    assert workflow.find_session(client, generated([]), picture(trusted=False)) is None  # inversion
    assert not client.made("generate")
    client = FakeDaemon()  # the image's session is gone: no regeneration for a layer that may show anything
    assert workflow.find_session(client, generated([]), picture(trusted=False)) is None
    assert not client.made("generate")


def test_a_documents_record_is_trusted_for_the_pixels_its_fingerprint_names():
    """Krita keeps one record per document: it counts as the layer's own where the layer has the
    pixels the record was made from, and the daemon compares any other layer."""
    edit = picture(trusted=False)
    record = generated([], fingerprint=edit.fingerprint())
    client = FakeDaemon({"s1": generated_session()})
    assert workflow.find_session(client, record, edit) == ("s1", None)
    assert client.calls == [("session", "s1")]
    client = FakeDaemon()  # after a daemon restart: regenerated from the seed
    assert workflow.find_session(client, record, edit) == ("new", None)
    assert client.made("generate") == [("generate", 5, "tiny", 0.7)]
    painted = picture(trusted=False)
    painted.pixels = b"\x01" + painted.pixels[1:]
    client = FakeDaemon({"s1": generated_session()})  # another layer of the document
    assert workflow.find_session(client, record, painted) == ("copy-of-s1", None)
    client = FakeDaemon()
    assert workflow.find_session(client, record, painted) is None and not client.made("generate")


# ----------------------------------------------------------------------------- real layers (GAN inversion)

def test_a_real_layer_is_inverted_then_dragged():
    client = FakeDaemon()
    edit = real_layer(selection())
    done, jobs, statuses = run(client, None, edit)
    assert client.made("create_session") == [("create_session", None, {
        "model": "tiny", "selection_bbox": [60, 30, 40, 30],
        "invert": {"steps_w": 20, "steps_wplus": 0, "steps_pti": 10, "preview_every": 0}})]
    assert jobs == ["inv", "drag-1"]  # a watchdog learns both jobs
    assert [s["kind"] for s in statuses] == ["invert", "drag"]
    (drag,) = client.made("drag")
    assert drag[1] == "real" and drag[2]["feather"] == 6 and drag[2]["steps"] == 7
    assert decode_png(drag[2]["mask"]) == (W, H, 1, edit.mask)
    assert drag[2]["handles"] == [[70.0, 40.0]] and drag[2]["targets"] == [[80.0, 45.0]]
    assert done.real and done.psnr == 31.25 and png_size(done.png) == (W, H)
    assert done.changed == {"x": 60, "y": 30, "width": 20, "height": 10}
    assert done.record == workflow.SessionRecord(
        "real", "http://fake", W, H, workflow.REAL, model="tiny", handles=[[12.0, 34.0]], targets=[[80.0, 45.0]],
        region=REGION, selection_bbox=[60, 30, 40, 30], fingerprint=None, invert=edit.invert)
    assert workflow.SessionRecord.from_json(done.record.to_json()) == done.record


def test_the_layer_png_sent_for_inversion_keeps_alpha():
    client = FakeDaemon()
    run(client, None, real_layer())
    width, height, channels, pixels = decode_png(client.sent[0])
    assert (width, height, channels) == (W, H, 4) and pixels == layer_pixels()


def test_a_real_layer_with_the_daemons_defaults_sends_none_of_them():
    sent = []

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.append(body)
            return {"session_id": "L1", "job_id": "inv1", "ready": False, "reused": False, "region": None}

    edit = workflow.Edit(W, H, layer_pixels(), 4, [DRAG])
    started = workflow.begin(Recorder("http://127.0.0.1:1"), None, edit, sleep=no_sleep)
    assert (started.phase, started.job_id, started.session_id, started.real) == ("invert", "inv1", "L1", True)
    assert set(sent[0]) == {"image"}  # no model, selection_bbox or invert: the daemon's own


def test_begin_start_drag_finish_in_steps_as_an_editor_that_polls():
    client = FakeDaemon()
    edit = real_layer(selection())
    started = workflow.begin(client, None, edit, sleep=no_sleep)
    assert (started.phase, started.job_id, started.session_id, started.real, started.reused) == \
        ("invert", "inv", "real", True, False)
    assert started.region == REGION and started.model == "tiny" and not client.made("drag")
    inverted = workflow.finished_job(client.wait("inv"))
    dragging = workflow.start_drag(client, started, edit, sleep=no_sleep, inversion=inverted)
    assert (dragging.phase, dragging.job_id, dragging.session_id, dragging.inversion) == \
        ("drag", "drag-1", "real", inverted)
    done = workflow.finish(client, dragging, client.wait("drag-1"), None, edit)
    assert done.real and done.psnr == 31.25 and done.record.origin == workflow.REAL


def test_a_reused_real_session_is_dragged_at_once():
    client = FakeDaemon(reused=True)
    done, jobs, _ = run(client, None, real_layer())  # no selection: no selection_bbox (the whole layer)
    assert client.made("create_session")[0][2]["selection_bbox"] is None
    assert jobs == ["drag-1"] and ("wait", "inv") not in client.calls
    assert done.real and done.psnr is None  # the daemon forgot the old invert job
    assert done.record.selection_bbox is None
    kept = {"job_id": "inv", "kind": "invert", "state": "done", "inversion": {"psnr": 27.5}}
    client = FakeDaemon(reused=True, jobs={"inv": kept})  # ... while it keeps it, its fit is shown
    assert run(client, None, real_layer())[0].psnr == 27.5


@pytest.mark.parametrize("code", ["session_busy", "session_inverting"])
def test_a_drag_waits_while_its_session_finishes_its_last_job(code):
    slept = []
    client = FakeDaemon(busy=2, busy_code=code)
    done = workflow.run(client, None, real_layer(), sleep=slept.append)
    assert len(client.made("drag")) == 3 and done.final["state"] == "done"
    assert slept == [workflow.BUSY_RETRY_S] * 2


def test_a_drag_gives_up_on_a_session_that_stays_busy():
    slept = []
    client = FakeDaemon(busy=10 ** 6)
    with pytest.raises(DaemonError, match="already has job") as e:
        workflow.run(client, None, real_layer(), sleep=slept.append)
    assert e.value.code == "session_busy"
    assert sum(slept) == pytest.approx(workflow.BUSY_PATIENCE_S, abs=workflow.BUSY_RETRY_S)
    assert len(client.made("drag")) == len(slept) + 1


@pytest.mark.parametrize("state,words", [("cancelled", "was cancelled; the image is unchanged"),
                                         ("failed", "failed on the daemon: no reason given")])
def test_a_cancelled_or_failed_inversion_is_an_error_and_no_drag(state, words):
    client = FakeDaemon(invert_state=state)
    with pytest.raises(workflow.WorkflowError, match="fitting of the model to the layer .GAN inversion. " + words):
        run(client, None, real_layer())
    assert not client.made("drag")


@pytest.mark.parametrize("case", ["same", "other_selection_inside", "images_record_same_pixels", "whole_layer"])
def test_a_real_layers_result_is_dragged_again_on_its_session(case):
    """The result layer's own record; another selection inside the fitted region fits as well, so
    does the image's record where its fingerprint shows that the layer has the same pixels, and a
    session fitted to the whole layer takes a drag without a selection."""
    client = FakeDaemon({"real": dict(FakeDaemon().real, handles=[[1.0, 2.0]], targets=[[1.0, 2.0]])})
    record = real_record(edit=real_layer(selection()))
    edit = real_layer(selection((55, 25, 80, 90) if case == "other_selection_inside" else (60, 30, 40, 30)),
                      model=None, trusted=case != "images_record_same_pixels")
    if case == "images_record_same_pixels":
        record.fingerprint = edit.fingerprint()
    if case == "whole_layer":
        client.sessions["real"]["region"] = {"x": 0, "y": 0, "width": W, "height": H}
        record.region, edit.mask = [0, 0, W, H], None
    done, jobs, _ = run(client, record, edit)
    assert not client.made("create_session") and not client.made("generate") and jobs == ["drag-1"]
    assert client.made("drag")[0][2]["feather"] == 6
    assert done.real and done.record.origin == workflow.REAL and done.record.region == record.region
    assert done.record.handles == [[12.0, 34.0]]


@pytest.mark.parametrize("change", ["moved_on", "untrusted", "untrusted_other_pixels", "outside", "whole_layer",
                                    "other_model", "other_pixels", "other_invert", "other_size", "not_ready",
                                    "gone"])
def test_a_real_layer_goes_back_to_the_daemon_when_its_session_does_not_fit(change):
    """The layer is sent again (the daemon finds its session by the pixels, or inverts anew), never
    copied with from_session (which real layers' sessions refuse) nor regenerated."""
    client = FakeDaemon({"real": dict(FakeDaemon().real, handles=[[1.0, 2.0]], targets=[[1.0, 2.0]])})
    mask, model, trusted, invert = selection(), None, True, None
    record = real_record(fingerprint=real_layer().fingerprint())
    pixels = None
    if change == "moved_on":
        record.handles = record.targets = [[5.0, 5.0]]
    elif change == "untrusted":  # the image's record, without a fingerprint (as a result layer's)
        trusted, record.fingerprint = False, None
    elif change == "untrusted_other_pixels":
        trusted, pixels = False, bytes(W * H * 4)
    elif change == "outside":
        mask[0:5, 0:5] = 255  # a selection beyond the fitted region
    elif change == "whole_layer":
        mask = None  # no selection: the whole layer, more than the region
    elif change == "other_model":
        model = "other"
    elif change == "other_pixels":
        pixels = bytes(W * H * 4)
    elif change == "other_invert":
        invert = workflow.invert_settings(50, 0, 10, 0)
    elif change == "other_size":
        client.sessions["real"]["width"] = W + 1
    elif change == "not_ready":
        client.sessions["real"]["ready"] = False
    else:
        del client.sessions["real"]
    edit = real_layer(mask, model=model, invert=invert, trusted=trusted, pixels=pixels)
    done, _, _ = run(client, record, edit)
    create = client.made("create_session")
    assert len(create) == 1 and create[0][1] is None
    assert create[0][2]["model"] == (model or "tiny")  # the record's model unless one is given
    assert not client.made("generate") and done.real


# ----------------------------------------------------------------------------- reading the editor

def test_the_mask_sent_for_a_selection():
    assert workflow.editable_mask(None, 4, 2) is None  # no selection: the whole layer
    assert workflow.editable_mask(b"\xff" * 8, 4, 2) is None  # everything selected: the same
    soft = bytes([0, 64, 128, 255, 255, 40, 0, 0])
    assert workflow.editable_mask(soft, 4, 2) == soft  # soft values are kept
    assert workflow.editable_mask(bytearray(soft), 4, 2) == soft
    with pytest.raises(workflow.WorkflowError, match="does not touch this layer"):
        workflow.editable_mask(bytes(8), 4, 2)
    with pytest.raises(ValueError, match="7 bytes, not 4x2"):
        workflow.editable_mask(bytes(7), 4, 2)


def test_the_selection_box_holds_the_selection_and_every_drag():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 255
    mask[6, 4] = 20  # soft pixels count
    assert workflow.selection_box(mask.tobytes(), 12, 10) == [3, 2, 4, 5]
    assert workflow.selection_box(mask.tobytes(), 12, 10, [((4.0, 3.0), (9.4, 1.0))]) == [3, 1, 8, 6]
    assert workflow.selection_box(mask.tobytes(), 12, 10, [((4.0, 3.0), (30.0, -4.0))]) == [3, 0, 9, 7]  # clamped
    assert workflow.selection_box(bytes([0, 0, 0, 0, 0, 9, 200, 0]), 4, 2) == [1, 1, 2, 1]
    assert workflow.selection_box(None, 12, 10, [((4.0, 3.0), (9.4, 1.0))]) is None  # no selection: the whole layer
    assert workflow.selection_box(bytes(120), 12, 10) is None
    with pytest.raises(ValueError):
        workflow.selection_box(bytes(5), 12, 10)
    edit = workflow.Edit(12, 10, bytes(480), 4, [((4.0, 3.0), (9.4, 1.0))], mask.tobytes())
    assert edit.box() == [3, 1, 8, 6]


def test_layer_fingerprint():
    a = workflow.layer_fingerprint(b"\x01\x02\x03\x04", 1, 1)
    assert a == workflow.layer_fingerprint(bytearray(b"\x01\x02\x03\x04"), 1, 1) and a.startswith("1x1:")
    assert a != workflow.layer_fingerprint(b"\x01\x02\x03\x05", 1, 1)
    assert workflow.Edit(1, 1, b"\x01\x02\x03\x04", 4, []).fingerprint() == a


def test_drag_request_is_what_the_daemon_accepts():
    from backend.config import Limits
    from backend.geometry import Mapping
    from backend.validation import parse_drag

    mask = bytes([0, 100, 255, 255] * 6)
    edit = workflow.Edit(4, 6, bytes(4 * 6 * 3), 3, [((1.0, 2.0), (3.0, 4.0)), ((2.123456, 5.0), (2.5, 1.0))], mask,
                         workflow.DragSettings(steps=40, mask_lambda=12.5, learning_rate=0.01, r1=3.0, w_layers=4,
                                               preview_every=0))
    request = workflow.drag_request(edit)
    assert request["handles"] == [[1.0, 2.0], [2.123, 5.0]]  # rounded to 1/1000 px
    assert decode_png(request["mask_png"]) == (4, 6, 1, mask)  # a gray PNG, soft values kept
    sent = {}

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.update(method=method, path=path, body=body)
            return {"job_id": "j"}

    Recorder("http://127.0.0.1:1").drag("sid", **request)
    assert (sent["method"], sent["path"]) == ("POST", "/sessions/sid/drag")
    parsed = parse_drag(json.loads(json.dumps(sent["body"])), Limits(), Mapping(4, 6, 64, 64))
    assert parsed.handles == [(1.0, 2.0), (2.123, 5.0)] and parsed.targets == [(3.0, 4.0), (2.5, 1.0)]
    assert (parsed.steps, parsed.mask_lambda, parsed.learning_rate, parsed.r1, parsed.r2, parsed.w_layers,
            parsed.preview_every) == (40, 12.5, 0.01, 3.0, None, 4, 0)
    assert np.asarray(parsed.mask).tobytes() == mask  # soft values arrive as sent
    whole = workflow.drag_request(workflow.Edit(4, 6, bytes(72), 3, [((1.0, 2.0), (3.0, 4.0))]))
    assert whole == {"steps": 200, "handles": [[1.0, 2.0]], "targets": [[3.0, 4.0]]}  # None: the daemon's default
    Recorder("http://127.0.0.1:1").drag("sid", **whole)
    assert "mask" not in sent["body"] and "learning_rate" not in sent["body"]


def test_drag_request_refuses_a_handle_outside_the_mask_and_no_drags():
    w, h = 8, 6
    outside = bytes(255 if x >= 6 else 0 for y in range(h) for x in range(w))
    edit = workflow.Edit(w, h, bytes(w * h * 4), 4, [((2.0, 2.0), (7.0, 3.0))], outside)
    with pytest.raises(workflow.WorkflowError, match=r"handle at \(2, 2\) lies outside the selection"):
        workflow.drag_request(edit)
    edit.drags = [((6.4, 2.0), (2.0, 3.0))]  # the handle inside, the target anywhere
    assert workflow.drag_request(edit)["targets"] == [[2.0, 3.0]]
    edit.drags = [((7.9, 5.9), (2.0, 3.0))]  # rounds onto the layer's last pixel
    assert workflow.drag_request(edit)["handles"] == [[7.9, 5.9]]
    edit.drags = []
    with pytest.raises(workflow.WorkflowError, match="at least one handle"):
        workflow.drag_request(edit)
    client = FakeDaemon({"s1": generated_session()})
    with pytest.raises(workflow.WorkflowError):  # before the daemon is asked anything
        workflow.run(client, generated([]), picture(drags=[]), sleep=no_sleep)
    assert client.calls == []


def test_feather_goes_only_to_real_layers():
    client = FakeDaemon({"s1": generated_session()})
    workflow.run(client, generated([]), picture(settings=workflow.DragSettings(feather=4)), sleep=no_sleep)
    assert "feather" not in client.made("drag")[0][2]
    assert workflow.drag_request(picture(settings=workflow.DragSettings(feather=4)))["feather"] == 4
    client = FakeDaemon()
    workflow.run(client, None, real_layer(feather=4), sleep=no_sleep)
    assert client.made("drag")[0][2]["feather"] == 4


def test_invert_settings_are_what_the_daemon_accepts():
    from backend.config import Limits
    from backend.validation import parse_session

    assert workflow.invert_settings() is None  # every step count: the daemon's default
    assert workflow.invert_settings(preview_every=0) == {"preview_every": 0}
    assert workflow.invert_settings(20.0, 0, 10) == {"steps_w": 20, "steps_wplus": 0, "steps_pti": 10}
    sent = {}

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.update(method=method, path=path, body=body)
            return {"session_id": "s"}

    png = encode_png(4, 3, 4, bytes(range(48)))
    Recorder("http://127.0.0.1:1").create_session(png, model="tiny", selection_bbox=[1, 0, 2, 2],
                                                  invert=workflow.invert_settings(20, 0, 10, 0))
    assert (sent["method"], sent["path"]) == ("POST", "/sessions")
    req = parse_session(json.loads(json.dumps(sent["body"])), Limits())
    assert (req.model, req.selection_bbox, req.region, req.from_session) == ("tiny", (1, 0, 2, 2), None, None)
    assert (req.invert.steps_w, req.invert.steps_wplus, req.invert.steps_pti, req.invert.preview_every) == \
        (20, 0, 10, 0)
    assert np.asarray(req.image).tobytes() == bytes(range(48))  # RGBA, alpha kept


def test_region_list():
    assert workflow.region_list({"x": 1, "y": 2, "width": 3, "height": 4}) == [1, 2, 3, 4]
    assert workflow.region_list((1, 2, 3, 4)) == [1, 2, 3, 4]
    for bad in (None, {"x": 1}, [1, 2, 3], "1234", {"x": "a", "y": 0, "width": 1, "height": 1}):
        assert workflow.region_list(bad) is None, bad


# ----------------------------------------------------------------------------- answers in words

def test_the_layers_names():
    """Both editors' preview and result layers."""
    assert workflow.result_layer_name({"state": "done", "step": 12, "reason": "reached"}) == \
        "DragGAN drag (12 steps, targets reached)"
    assert workflow.result_layer_name({"step": 3, "reason": "max_steps"}, 27.04) == \
        "DragGAN drag (3 steps, step limit, model fit 27.0 dB)"
    assert workflow.result_layer_name({"step": 5, "reason": "stalled"}) == "DragGAN drag (5 steps, stalled)"
    assert workflow.result_layer_name({}) == "DragGAN drag (0 steps, done)"
    assert workflow.preview_layer_name({"kind": "drag", "step": 7, "preview_step": 5}) == "DragGAN preview (step 5)"
    assert workflow.preview_layer_name({"kind": "drag"}) == "DragGAN preview (step 0)"
    assert workflow.preview_layer_name({"kind": "invert", "step": 40, "preview_step": 40}) == "DragGAN preview (fit)"


def test_progress_of_a_drag():
    p = workflow.progress({"state": "queued", "queue_position": 2})
    assert (p.fraction, p.text, p.finished) == (0.0, "Waiting for the daemon (place 2 in the queue)...", False)
    assert workflow.progress({"state": "queued"}).text == "Waiting for the daemon..."
    p = workflow.progress({"state": "running", "step": 30, "max_steps": 120, "distance": 7.25, "eta_seconds": 12.2})
    assert (p.fraction, p.text, p.finished, p.psnr) == (0.25, "Step 30/120, 7.2 px to go, about 13 s left", False,
                                                        None)
    p = workflow.progress({"state": "running", "step": 30, "max_steps": 120, "eta_seconds": 75.4})
    assert p.text == "Step 30/120, about 1 min 16 s left"
    assert workflow.progress({"state": "running", "step": 0, "max_steps": 0}).text == "Step 0/0"
    assert workflow.progress({"state": "running", "step": 0, "max_steps": 0}).fraction == 0.0
    p = workflow.progress({"state": "done", "step": 44, "max_steps": 120, "reason": "reached"})
    assert (p.fraction, p.text, p.finished) == (1.0, "Done after 44 steps (targets reached)", True)
    for reason, words in [("max_steps", "step limit"), ("stalled", "handles stopped moving"), ("stopped", "stopped")]:
        assert workflow.progress({"state": "done", "step": 9, "reason": reason}).text == \
            "Done after 9 steps ({})".format(words)
    assert workflow.progress({"state": "done", "step": 9}).text == "Done after 9 steps"
    p = workflow.progress({"state": "cancelled", "step": 3, "max_steps": 12})
    assert (p.fraction, p.text, p.finished) == (0.25, "Cancelled", True)
    p = workflow.progress({"state": "failed", "error": {"code": "x", "message": "out of memory on cuda:0"}})
    assert (p.text, p.finished) == ("Failed: out of memory on cuda:0", True)
    assert workflow.progress({"state": "failed"}).text == "Failed: unknown error"


def test_progress_of_an_inversion():
    status = {"kind": "invert", "state": "running", "step": 30, "max_steps": 120, "eta_seconds": 4.5,
              "inversion": {"stage": "w+", "stage_step": 10, "stage_steps": 40, "psnr": 23.456}}
    p = workflow.progress(status)
    assert (p.fraction, p.text, p.finished) == \
        (0.25, "Fitting the model to the layer (W+ projection 10/40), PSNR 23.5 dB, about 5 s left", False)
    assert p.psnr == pytest.approx(23.456)
    status["inversion"] = {"stage": None, "stage_step": 0, "stage_steps": 0, "psnr": None}
    p = workflow.progress(dict(status, step=0, eta_seconds=None))
    assert (p.fraction, p.text, p.psnr) == (0.0, "Fitting the model to the layer", None)
    assert workflow.progress({"kind": "invert", "state": "running", "step": 1, "max_steps": 9, "inversion": {
        "stage": "pti", "stage_step": 1, "stage_steps": 4}}).text == \
        "Fitting the model to the layer (pivotal tuning 1/4)"
    assert workflow.progress({"kind": "invert", "state": "queued", "queue_position": 1}).text == \
        "Waiting for the daemon (place 1 in the queue)..."
    done = {"kind": "invert", "state": "done", "step": 60, "max_steps": 100, "reason": "stopped",
            "inversion": {"stage": "pti", "stage_step": 3, "stage_steps": 30, "psnr": 24.04}}
    p = workflow.progress(done)
    assert (p.fraction, p.text, p.finished, p.psnr) == \
        (1.0, "Fitted the model to the layer, PSNR 24.0 dB (stopped early)", True, 24.04)
    assert workflow.progress(dict(done, reason=None)).text == "Fitted the model to the layer, PSNR 24.0 dB"
    assert workflow.progress({"kind": "invert", "state": "cancelled"}).text == "Fitting cancelled"
    assert workflow.progress({"kind": "invert", "state": "failed", "error": {"message": "boom"}}).text == \
        "Fitting failed: boom"


def test_format_eta():
    assert workflow.format_eta(None) == ""
    assert workflow.format_eta(0) == "0 s" and workflow.format_eta(-3) == "0 s"
    assert workflow.format_eta(4.4) == "5 s"  # rounded up: never promise less than is left
    assert workflow.format_eta(59.2) == "1 min 00 s" and workflow.format_eta(75.4) == "1 min 16 s"
    assert workflow.format_eta(7322) == "2 h 02 min"


def test_finished_job():
    done = {"state": "done", "step": 12, "reason": "reached"}
    assert workflow.finished_job(done) is done
    with pytest.raises(workflow.WorkflowError, match="^The drag failed on the daemon: out of memory$"):
        workflow.finished_job({"state": "failed", "error": {"code": "x", "message": "out of memory"}})
    with pytest.raises(workflow.WorkflowError, match="^The drag was cancelled; the image is unchanged.$"):
        workflow.finished_job({"state": "cancelled"})
    with pytest.raises(workflow.WorkflowError, match="inversion. failed on the daemon: bad"):
        workflow.finished_job({"kind": "invert", "state": "failed", "error": {"message": "bad"}})
    with pytest.raises(workflow.WorkflowError, match="^The fitting of the model to the layer .GAN inversion. was "
                                                     "cancelled; the image is unchanged.$"):
        workflow.finished_job({"kind": "invert", "state": "cancelled"})
    client = FakeDaemon({"s1": generated_session()})
    client.wait = lambda job_id, on_progress=None, **kw: {"job_id": job_id, "kind": "drag", "state": "failed",
                                                          "error": {"message": "boom"}}
    with pytest.raises(workflow.WorkflowError, match="drag failed on the daemon: boom"):
        workflow.run(client, generated([]), picture(), sleep=no_sleep)


# ----------------------------------------------------------------------------- what a layer remembers

def test_session_record_json_round_trip():
    record = generated([(1.5, 2.0)], origin=workflow.DRAGGED)
    assert workflow.SessionRecord.from_json(record.to_json()) == record
    assert workflow.SessionRecord.from_json(record.to_json().encode("utf-8")) == record  # a parasite's bytes
    real = real_record(fingerprint="200x150:0badf00d")
    assert workflow.SessionRecord.from_json(real.to_json()) == real
    assert json.loads(real.to_json())["region"] == REGION


def test_an_old_krita_annotation_is_read():
    layer = {"kind": "layer", "session_id": "s9", "model": "tiny", "width": 200, "height": 150,
             "daemon": "http://d:1", "region": {"x": 40, "y": 20, "width": 120, "height": 100},
             "selection_bbox": [60, 40, 50, 40], "layer": "3x2:0badf00d", "invert": {"steps_w": 8}}
    assert workflow.SessionRecord.from_json(json.dumps(layer)) == workflow.SessionRecord(
        "s9", "http://d:1", 200, 150, workflow.REAL, model="tiny", region=[40, 20, 120, 100],
        selection_bbox=[60, 40, 50, 40], fingerprint="3x2:0badf00d", invert={"steps_w": 8})
    listed = dict(layer, region=[40, 20, 120, 100], model=None, invert=None, selection_bbox=None)
    assert workflow.SessionRecord.from_json(json.dumps(listed)).region == [40, 20, 120, 100]
    made = {"session_id": "abc", "model": "ffhq", "seed": 42, "width": 512, "height": 512, "daemon": "http://x:1"}
    assert workflow.SessionRecord.from_json(json.dumps(made)) == workflow.SessionRecord(
        "abc", "http://x:1", 512, 512, workflow.GENERATED, model="ffhq", seed=42)


def test_an_old_gimp_parasite_is_read():
    made = {"url": "http://x", "session_id": "s1", "model": "tiny", "width": 64, "height": 64,
            "handles": [[1.5, 2.0]], "targets": [[3.0, 4.0]], "seed": 5, "psi": 0.7, "origin": "generated"}
    assert workflow.SessionRecord.from_json(json.dumps(made, sort_keys=True).encode("utf-8")) == \
        workflow.SessionRecord("s1", "http://x", 64, 64, workflow.GENERATED, model="tiny", seed=5, psi=0.7,
                               handles=[[1.5, 2.0]], targets=[[3.0, 4.0]])
    dragged = dict(made, origin="drag")
    assert workflow.SessionRecord.from_json(json.dumps(dragged)).origin == workflow.DRAGGED
    layer = dict(made, origin="layer", seed=None, psi=None, region={"x": 50, "y": 20, "width": 100, "height": 100})
    record = workflow.SessionRecord.from_json(json.dumps(layer))
    assert (record.origin, record.region, record.seed, record.fingerprint) == (workflow.REAL, REGION, None, None)


@pytest.mark.parametrize("garbage", [None, b"", "", b"not json", "{", b"\xff\xfe{}", "null", "[1, 2]", '"s1"',
                                     '{"x": 1}', '{"session_id": 5, "width": 1, "height": 1}',
                                     '{"session_id": "s1"}', '{"session_id": "s1", "url": "u", "width": 64}'])
def test_garbage_is_no_record(garbage):
    assert workflow.SessionRecord.from_json(garbage) is None


@pytest.mark.parametrize("broken", ['{"session_id": "", "url": "u", "width": 64, "height": 64, "seed": 5}',
                                    '{"session_id": "s1", "url": "u", "width": 64, "height": 64, "handles": 5}',
                                    '{"session_id": "s1", "url": "u", "width": 64, "height": 64, "handles": [[1]]}',
                                    '{"session_id": "s1", "url": "u", "width": 64, "height": 64, "seed": "abc"}',
                                    '{"session_id": "s1", "url": "u", "width": "64", "height": 64}',
                                    '{"session_id": "s1", "url": "u", "width": 64, "height": 64, "origin": "x"}',
                                    '{"session_id": "s1", "url": "u", "width": 64, "height": 64, "invert": 5}'])
def test_a_record_with_fields_of_the_wrong_shape_is_no_record(broken):
    """Such a note (hand-edited, or damaged) must not break the drag: read as no record, the layer is
    sent to the daemon as any other picture. (Before SessionRecord.well_formed, an empty id reached
    the daemon as GET /sessions/ and the others failed in run() with TypeError, IndexError, ValueError.)"""
    assert workflow.SessionRecord.from_json(broken) is None
    client = FakeDaemon()
    done, jobs, _ = run(client, workflow.SessionRecord.from_json(broken), real_layer())
    assert done.real and jobs == ["inv", "drag-1"] and client.calls[0][0] == "create_session"


# ----------------------------------------------------------------------------- through real daemons

TOKEN = "workflow-test-token-0123456789"


class Spy(DaemonClient):
    """The real client, noting what the workflow asked the daemon for."""

    def __init__(self, url):
        super().__init__(url, token=TOKEN)
        self.asked = []

    def generate(self, seed, model=None, psi=None):
        self.asked.append("generate")
        return super().generate(seed, model=model, psi=psi)

    def create_session(self, image_png, from_session=None, **kw):
        self.asked.append("from_session" if from_session else "layer")
        return super().create_session(image_png, from_session=from_session, **kw)

    def drag(self, session_id, handles, targets, mask_png=None, **options):
        self.asked.append("drag")
        return super().drag(session_id, handles, targets, mask_png=mask_png, **options)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    write_tiny_model(folder)
    return folder


@pytest.fixture
def daemon(models, tmp_path):
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "daemon.log") as url:
        yield url


def run_real(client, record, edit):
    kinds = []
    done = workflow.run(client, record, edit, on_status=lambda s: kinds.append(s.get("kind")))
    return done, set(kinds)


def new_image(client, seed=7):
    """What "New image from model" makes: the picture as an opaque RGBA layer and its record."""
    made = client.generate(seed=seed, model=MODEL)
    return rgba_of(made["image"]), workflow.generated_record(made, client.url, seed, made.get("psi"))


def drag_of(rgba, drags=(((20.0, 20.0), (26.0, 22.0)),), mask=None, model=None, trusted=True):
    height, width = rgba.shape[:2]
    return workflow.Edit(width, height, rgba.tobytes(), 4, list(drags), mask,
                         workflow.DragSettings(steps=5, preview_every=0, feather=3), model=model,
                         invert=workflow.invert_settings(10, 0, 5, 0), trusted=trusted)


def rgba_of(png):
    """A result PNG as the editor's RGBA layer."""
    width, height, channels, pixels = decode_png(png)
    found = np.frombuffer(pixels, np.uint8).reshape(height, width, channels)
    if channels == 4:
        return found
    rgba = np.full((height, width, 4), 255, np.uint8)
    rgba[..., :3] = found[..., :3]
    return rgba


def gradient_layer():
    """A 90x70 layer the daemon did not make: a gradient with a transparent corner."""
    y, x = np.mgrid[0:70, 0:90]
    layer = np.stack([x * 255 // 89, y * 255 // 69, (x + y) * 255 // 158, np.full_like(x, 255)], -1).astype(np.uint8)
    layer[:8, :8, 3] = 0
    return layer


@pytest.mark.slow
def test_after_a_daemon_restart_a_generated_layer_is_regenerated_from_its_seed(models, tmp_path):
    """New image, drag, the daemon stops; a new daemon (another port) drags the same layer again: the
    picture is made anew from its seed, nothing is inverted, and the drag gives the same picture."""
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "first.log") as url:
        first = Spy(url)
        rgba, record = new_image(first)
        before, kinds = run_real(first, record, drag_of(rgba))
        assert kinds == {"drag"} and first.asked == ["generate", "drag"]
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "second.log") as url:
        second = Spy(url)
        with pytest.raises(DaemonError) as e:
            second.session(record.session_id)
        assert e.value.code == "unknown_session"
        after, kinds = run_real(second, record, drag_of(rgba))
        assert kinds == {"drag"} and second.asked == ["generate", "drag"]  # regenerated, not inverted
        assert not after.real and after.record.url == second.url and after.record.seed == 7
        difference = np.abs(rgba_of(after.png).astype(int) - rgba_of(before.png).astype(int))
        assert difference.mean() < 0.25  # the same seed and drag: the same result (bit-exact on one CPU)


@pytest.mark.slow
def test_after_a_daemon_restart_a_dragged_result_is_fitted_anew(models, tmp_path):
    """The result layer of a drag remembers a session the new daemon does not have; its seed would
    make the picture before the drag, so the result is fitted as a real layer and dragged."""
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "first.log") as url:
        first = Spy(url)
        rgba, record = new_image(first)
        done, _ = run_real(first, record, drag_of(rgba))
        assert done.record.origin == workflow.DRAGGED and done.record.seed == 7
    result = rgba_of(done.png)
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "second.log") as url:
        second = Spy(url)
        again, kinds = run_real(second, done.record, drag_of(result, [((30.0, 30.0), (34.0, 26.0))]))
        assert second.asked == ["layer", "drag"] and kinds == {"invert", "drag"}
        assert again.real and again.final["state"] == "done" and again.record.origin == workflow.REAL
        assert rgba_of(again.png).shape == result.shape


@pytest.mark.slow
def test_after_a_daemon_restart_a_real_layer_is_inverted_anew(models, tmp_path):
    layer = gradient_layer()
    mask = np.zeros(layer.shape[:2], np.uint8)
    mask[20:60, 25:75] = 255
    edit = drag_of(layer, [((40.0, 35.0), (46.0, 38.0))], mask.tobytes(), model=MODEL)
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "first.log") as url:
        first = Spy(url)
        done, kinds = run_real(first, None, edit)
        assert first.asked == ["layer", "drag"] and kinds == {"invert", "drag"}
        assert done.real and done.psnr is not None and done.record.origin == workflow.REAL
        again, kinds = run_real(first, done.record, drag_of(rgba_of(done.png), edit.drags, edit.mask, model=MODEL))
        assert first.asked[2:] == ["drag"] and kinds == {"drag"}  # the result layer: on its session at once
    result = rgba_of(again.png)
    with running_daemon(models, token=TOKEN, log_path=tmp_path / "second.log") as url:
        second = Spy(url)
        after, kinds = run_real(second, again.record, drag_of(result, edit.drags, edit.mask, model=MODEL))
        assert second.asked == ["layer", "drag"] and kinds == {"invert", "drag"}  # inverted anew
        assert after.real and after.final["state"] == "done" and after.record.session_id != again.record.session_id
        out = rgba_of(after.png)
        assert (out[mask == 0] == result[mask == 0]).all()  # the layer's own pixels outside the selection


def test_the_daemon_compares_the_pixels_of_a_scaled_or_other_picture(daemon):
    """The daemon's own answers to from_session: the same picture scaled gets a session made from the
    record's; another picture under the image's record is refused and then fitted as a real layer."""
    client = Spy(daemon)
    rgba, record = new_image(client)
    big = np.repeat(np.repeat(rgba, 2, axis=0), 2, axis=1)  # the layer scaled to 128x128
    done, kinds = run_real(client, record, drag_of(big, [((40.0, 40.0), (50.0, 44.0))]))
    assert client.asked == ["generate", "from_session", "drag"] and kinds == {"drag"}
    assert (done.record.width, done.record.height) == (128, 128) and png_size(done.png) == (128, 128)
    client.asked.clear()
    other = gradient_layer()[:64, :64].copy()
    other[..., 3] = 255
    done, kinds = run_real(client, record, drag_of(other, model=MODEL, trusted=False))
    assert client.asked == ["from_session", "layer", "drag"] and kinds == {"invert", "drag"}
    assert done.real


def test_undo_then_the_same_drag_on_the_source_is_not_a_doubled_edit(daemon):
    """The source layer's record names the picture's first state: after a drag (whose result layer the
    artist then undoes), the same drag on the source starts from the source again and gives the same
    picture; on the result layer it continues from the result."""
    client = Spy(daemon)
    rgba, record = new_image(client)
    assert record.state_id
    first, _ = run_real(client, record, drag_of(rgba))
    again, _ = run_real(client, record, drag_of(rgba))
    assert client.asked == ["generate", "drag", "drag"]  # the same session, from its first state
    assert np.array_equal(rgba_of(again.png), rgba_of(first.png))
    assert first.record.state_id and first.record.state_id != record.state_id
    result = rgba_of(first.png)
    on_top, _ = run_real(client, first.record, drag_of(result))
    assert client.asked[3:] == ["drag"]  # on the result's own state, no new session
    assert np.abs(rgba_of(on_top.png).astype(int) - result.astype(int)).mean() > 0.1  # a second edit


def test_reset_to_original_forgets_the_drags(daemon):
    client = Spy(daemon)
    rgba, record = new_image(client)
    first, _ = run_real(client, record, drag_of(rgba))
    original = workflow.reset(client, first.record)
    assert (original.state_id, original.handles, original.origin) == (record.state_id, [], workflow.GENERATED)
    assert client.session(record.session_id)["handles"] == []
    assert np.array_equal(rgba_of(client.session_image(record.session_id)), rgba)
    again, _ = run_real(client, original, drag_of(rgba))
    assert np.array_equal(rgba_of(again.png), rgba_of(first.png))


def test_a_real_layer_dragged_again_starts_from_its_own_pixels(daemon):
    """The source of a real layer has no record (GIMP) or one for its pixels: sent again, the daemon
    finds its session for the same pixels and the drag starts from the fitted picture, not from the
    last drag."""
    client = Spy(daemon)
    layer = gradient_layer()
    edit = drag_of(layer, [((40.0, 35.0), (46.0, 38.0))], model=MODEL)
    first, kinds = run_real(client, None, edit)
    assert kinds == {"invert", "drag"}
    again, kinds = run_real(client, None, edit)
    assert kinds == {"drag"} and client.asked == ["layer", "drag", "layer", "drag"]  # reused, not inverted
    assert np.array_equal(rgba_of(again.png), rgba_of(first.png))


def test_a_state_the_daemon_dropped_falls_back_like_a_lost_session():
    client = FakeDaemon({"s1": dict(generated_session(), state_id="st-9", states=[{"state_id": "st-9"}])})
    record = replace(generated([]), state_id="st-1")  # dropped: not among the session's states
    # as for a session that moved on: the daemon compares the pixels with its current picture
    assert workflow.find_session(client, record, picture()) == ("copy-of-s1", None)
    kept = replace(record, state_id="st-9")
    assert workflow.find_session(client, kept, picture()) == ("s1", "st-9")


# ----------------------------------------------------------------------------- downloads and model menus

def test_download_progress_counts_bytes():
    running = {"kind": "download", "model": "zoo-cat", "state": "running", "bytes_done": 2_500_000,
               "bytes_total": 10_000_000, "eta_seconds": 3.2}
    shown = workflow.progress(running)
    assert shown.fraction == 0.25 and not shown.finished
    assert shown.text == "Downloading zoo-cat: 2.5 MB of 10.0 MB, about 4 s left"
    unknown_total = workflow.progress(dict(running, bytes_total=None, eta_seconds=None))
    assert unknown_total.fraction == 0.0 and unknown_total.text == "Downloading zoo-cat: 2.5 MB"
    assert workflow.progress(dict(running, state="done", bytes_done=10_000_000)).text == \
        "Downloaded zoo-cat (10.0 MB)"
    cancelled = workflow.progress(dict(running, state="cancelled"))
    assert cancelled.finished and "goes on from 2.5 MB" in cancelled.text
    failed = workflow.progress(dict(running, state="failed", error={"message": "the checksum did not match"}))
    assert failed.text == "Download of zoo-cat failed: the checksum did not match"


# ----------------------------------------------------------------------------- what the editor's window does

def test_run_shows_previews_and_stop_keeps_the_drag_so_far(daemon):
    """The editor's preview and Stop and keep: the drag is held at the daemon's test gate after 2 steps,
    the first preview (the layer's size) sets the stop, and the result is that drag so far."""
    import editor_gate as gate
    client = DaemonClient(daemon, token=TOKEN)
    rgba, record = new_image(client)
    edit = replace(drag_of(rgba), settings=workflow.DragSettings(steps=50, preview_every=2))
    stop, previews = threading.Event(), []

    def on_preview(png, status):
        previews.append((png_size(png), status.get("preview_step")))
        stop.set()

    with gate.holding(daemon, TOKEN, step=2):
        done = workflow.run(client, record, edit, on_preview=on_preview, stop_event=stop)
    assert previews[0] == ((64, 64), 2)
    assert done.final["reason"] == "stopped" and done.final["step"] <= 3  # stop ends the job after the step it is in
    assert done.record.state_id and done.record.state_id != record.state_id
    assert not np.array_equal(rgba_of(done.png), rgba)


def test_run_cancel_ends_the_job_and_leaves_the_session_as_it_was(daemon):
    import editor_gate as gate
    client = DaemonClient(daemon, token=TOKEN)
    rgba, record = new_image(client)
    edit = replace(drag_of(rgba), settings=workflow.DragSettings(steps=50, preview_every=2))
    cancel = threading.Event()
    with gate.holding(daemon, TOKEN, step=2):
        with pytest.raises(workflow.WorkflowError, match="cancelled"):
            workflow.run(client, record, edit, on_preview=lambda png, status: cancel.set(), cancel_event=cancel)
    assert client.session(record.session_id)["state_id"] == record.state_id


def test_stop_during_the_inversion_drags_from_the_fit_so_far(daemon):
    """Stop while a real layer is fitted ends the fitting early; the drag then runs (and can be stopped again)."""
    import editor_gate as gate
    client = DaemonClient(daemon, token=TOKEN)
    layer = gradient_layer()
    edit = replace(drag_of(layer, drags=(((40.0, 30.0), (46.0, 33.0)),)),
                   settings=workflow.DragSettings(steps=4, preview_every=2, feather=3),
                   invert=workflow.invert_settings(500, 0, 0, 2))
    stop, kinds = threading.Event(), []

    def on_preview(png, status):
        kinds.append(status.get("kind"))
        if status.get("kind") == "invert":
            stop.set()
        else:
            gate.hold_at(daemon, None, TOKEN)  # the drag runs to its end

    with gate.holding(daemon, TOKEN, step=2):
        done = workflow.run(client, None, edit, on_preview=on_preview, stop_event=stop)
    assert kinds[0] == "invert" and "drag" in kinds
    inversion = client.job(client.session(done.record.session_id)["invert_job"])
    assert inversion["reason"] == "stopped" and inversion["step"] < 500
    assert (done.final["reason"], done.final["step"]) != ("stopped", 2) and done.real


@pytest.mark.slow
def test_an_aligned_real_layer_is_framed_by_its_landmarks_and_reused_only_with_them(daemon):
    """A demo cat pasted off-centre into a larger layer, framed by its eye and mouth landmarks (Edit.align):
    the daemon's session is aligned by the demo recipe; the same layer and landmarks again reuse it,
    other landmarks make a new one; outside the edit the layer's bytes are kept."""
    from draggan_core import registry
    from draggan_core.checkpoint import load_generator
    from draggan_core.demo import world
    from draggan_core.demo.train import params_from_z
    from draggan_core.stylegan2 import seed_to_z

    client = DaemonClient(daemon, token=TOKEN)
    cat = rgba_of(client.generate(seed=0, model="demo", psi=1.0)["image"])
    layer = np.full((160, 200, 4), 255, np.uint8)
    layer[..., :3] = (90, 140, 200)
    layer[20:148, 40:168] = cat
    z_dim = load_generator(registry.DEMO_FILE, device="cpu").z_dim
    marks = world.landmarks(params_from_z(seed_to_z(0, z_dim))[0].numpy(), 128)
    align = {k: [marks[k][0] + 40.0, marks[k][1] + 20.0] for k in ("left_eye", "right_eye", "mouth_left", "mouth_right")}
    tip = marks["right_ear_tip"]
    edit = replace(drag_of(layer, drags=(((tip[0] + 40, tip[1] + 20), (tip[0] + 36, tip[1] + 12)),), model="demo"),
                   align=align)
    done = workflow.run(client, None, edit)
    session = client.session(done.record.session_id)
    assert session["align"]["framing"] == "demo" and done.record.align == align
    result = rgba_of(done.png)
    assert np.array_equal(result[:, :20], layer[:, :20]) and not np.array_equal(result, layer)

    again = workflow.run(client, done.record, replace(edit, pixels=layer.tobytes()))
    assert again.record.session_id == done.record.session_id  # the same layer, framed the same way
    moved = dict(align, left_eye=[align["left_eye"][0] - 2.0, align["left_eye"][1]])
    other = workflow.run(client, done.record, replace(edit, align=moved))
    assert other.record.session_id != done.record.session_id
