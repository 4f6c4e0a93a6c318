"""Align mode in a real Krita (issue 16), run after the history scenario (the demo model is selected):

a layer the daemon did not generate (the demo model's seed-0 cat turned, scaled and placed off-centre
by tests/test_krita_e2e.py, with its eye and mouth landmarks and the README's drag transformed the
same way); the docker's Align button arms the tool in Align mode and the four landmarks are clicked
through the tool's own click path (DragTool.click: what the canvas's mouse press and release call),
the overlay draws them and the square; the Drag tool places the handle and target; Run -> the
daemon's session is framed by the demo recipe with exactly those landmarks, the result differs
inside and the source is unchanged. The landmarks are saved in the document's annotation.
Environment: DRAGGAN_E2E_TILTED (JSON: path, landmarks, drag), DRAGGAN_E2E_ALIGN_INVERT_W (default 30).
"""
import json
import os

from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QLabel, QPushButton, QSpinBox, QToolButton

from .history_scenario import finished_run, overlay_colour, pixels
from .scenario import DAEMON_URL, check

NAMES = ("left_eye", "right_eye", "mouth_left", "mouth_right")


def align_scenario(run, k, win, ctl, tool, act, w):
    from draggan_krita import align, daemon, kritadoc
    tilted = json.loads(os.environ["DRAGGAN_E2E_TILTED"])
    img = QImage(tilted["path"]).convertToFormat(QImage.Format_ARGB32)  # B, G, R, A bytes: Krita's RGBA/U8
    check(not img.isNull(), "the tilted cat picture did not load", path=tilted["path"])
    W, H = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes() if hasattr(img, "sizeInBytes") else img.byteCount())
    raw = bytes(ptr)
    bgra = b"".join(raw[y * img.bytesPerLine():y * img.bytesPerLine() + 4 * W] for y in range(H))
    ndocs = len(k.documents())
    doc, source = kritadoc.new_document(W, H, "tilted cat", bgra, "photo")
    doc.setBatchmode(True)
    yield from run.wait_for(lambda: len(k.documents()) > ndocs and kritadoc.active_document() is not None
                            and kritadoc.same_document(kritadoc.active_document(), doc), 60)
    yield 400
    win.activeView().canvas().setZoomLevel(3.0)
    yield 500
    src_before = pixels(source, W, H)
    check(ctl.session_record(doc) is None, "the tilted cat has a session annotation")
    check(ctl.framing() == "demo", "the demo model's framing is not known", framing=ctl.framing(),
          model=ctl.settings.model)

    # Align: the docker's button arms the tool in Align mode; the four clicks place the landmarks
    w(QToolButton, "draggan_align").click()
    yield from run.wait_for(lambda: tool.armed and tool.mode == tool.ALIGN and tool.transform is not None
                            and kritadoc.same_document(tool._doc, doc), 20)
    check(act.isChecked(), "the tool's action is not checked in Align mode")
    marks = dict(zip(NAMES, tilted["landmarks"]))
    al = ctl.alignment_for(doc)
    al.clear()
    for name in NAMES:
        check(al.next_name() == name, "the landmarks are not asked in order", next=al.next_name(), want=name)
        check(tool.click(*marks[name]), "the Align click was not the tool's", name=name)
        yield 100
    sent = al.landmarks()
    check(sent == {n: [round(v, 3) for v in marks[n]] for n in NAMES}, "the landmarks were not placed",
          landmarks=sent, want=marks)
    square = ctl.alignment_square()
    check(square is not None and square == align.square("demo", *al.points), "no square for the demo framing",
          square=square)
    saved = align.Alignment(W, H).load_json(kritadoc.read_annotation(doc, align.ANNOTATION_ALIGN))
    check(saved.landmarks() == sent, "the landmarks are not saved with the document", saved=saved.points)
    yield 400
    check(green_at(tool, marks["left_eye"]), "the overlay does not draw the left eye's landmark")
    align_text = w(QLabel, "draggan_align_text").text()
    check(align_text.startswith("Aligned by"), "the docker does not show the alignment", text=align_text)
    yield from run.screenshot("krita-align.png")

    # the Drag tool (points mode) places the handle and its target
    w(QToolButton, "draggan_tool_toggle").click()
    yield from run.wait_for(lambda: tool.armed and tool.mode == tool.POINTS, 10)
    pts = ctl.points_for(doc)
    pts.clear()
    handle, target = tilted["drag"][:2], tilted["drag"][2:]
    tool.click(*handle)
    tool.click(*target)
    check(len(pts) == 1 and pts.pairs[0][1] is not None and al.landmarks() == sent,
          "the points were not placed (or the landmarks moved)", pairs=pts.pairs, landmarks=al.points)

    # Run: the daemon fits the aligned square, drags, and maps the edit back into the layer
    w(QSpinBox, "draggan_steps").setValue(int(os.environ.get("DRAGGAN_E2E_ALIGN_STEPS", "8")))
    w(QSpinBox, "draggan_invert_w").setValue(int(os.environ.get("DRAGGAN_E2E_ALIGN_INVERT_W", "30")))
    w(QSpinBox, "draggan_invert_wplus").setValue(0)
    w(QSpinBox, "draggan_invert_pti").setValue(0)
    w(QPushButton, "draggan_run").click()
    yield 100
    check(ctl.running() or (ctl.last_result or {}).get("ok"), "the aligned drag did not start",
          message=ctl.last_message)
    check(ctl.job is None or ctl.job.edit.align == sent, "the Run's edit does not carry the landmarks",
          edit_align=ctl.job and ctl.job.edit.align)
    result = yield from finished_run(run, ctl, "aligned", timeout_s=600)
    session = daemon.Daemon(DAEMON_URL).session(result["session"])
    entry = ctl.layer_entry(doc, source)
    layer = kritadoc.find_layer(doc, result["layer_id"])
    out = pixels(layer, W, H)
    changed = result.get("changed") or {}
    differing = sum(1 for i in range(0, len(out), 4) if out[i + 3] and out[i:i + 4] != src_before[i:i + 4])
    run.log("align_run", result=result, align=session.get("align"), entry=entry and vars(entry),
            changed=changed, differing=differing)
    check(result["kind"] == "layer", "the tilted cat was not sent as a real layer", result=result)
    check((session.get("align") or {}).get("framing") == "demo"
          and session["align"].get("landmarks") == sent, "the daemon's session is not framed by the landmarks",
          align=session.get("align"), sent=sent)
    check(entry is not None and entry.record.align == sent, "the layer's record does not keep the alignment",
          entry=entry and vars(entry))
    check(changed and differing > 20, "the aligned drag changed nothing inside", changed=changed, differing=differing)
    check(pixels(source, W, H) == src_before, "the aligned drag changed the source layer")
    act.trigger()  # leave the tool
    yield 200


def green_at(tool, point):
    """Whether the overlay draws a landmark (green) at the image point."""
    col = overlay_colour(tool, point)
    return col is not None and col.green() > 150 and col.red() < 120 and col.blue() < 150
