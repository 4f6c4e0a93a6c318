"""The artist's history in a real Krita, on the demo model (issue 15), run at the end of the main
scenario (scenario.py), which passes itself as `run`:

drag -> a result layer tied to the state its drag made (its tracked handles shown); one undo -> the
source is selected with the original handles, and the same drag again gives the first result pixel
for pixel; a drag on the result layer continues from it (a second edit on top of the first, from
the result's state); Reset to original on that result goes back to the source, and the next drag
gives the first result again (not a doubled edit); a reset of a session the daemon lost says the
next drag regenerates the picture, and it does.

On the way it photographs the workflow for the docs (scripts/docs_pictures.py): each frame of
krita-workflow-NN-*.png joins the canvas around the picture, the DragGAN docker's points, buttons
and messages and Krita's Layers docker, cut from a screenshot of the whole screen (the OpenGL canvas
and the overlay included).
Environment: DRAGGAN_E2E_DEMO_MODEL (default demo), DRAGGAN_E2E_DEMO_STEPS (default 16).
"""
import os

from krita import Krita
from PyQt5.QtCore import QPoint, QRect, Qt
from PyQt5.QtGui import QColor, QFont, QImage, QPainter
from PyQt5.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QPushButton, QScrollArea, QSpinBox

from . import editor_gate as gate
from .scenario import DAEMON_URL, OUT_DIR, check

# right ear up on seed 0 (draggan_core/demo/scenarios.py: the ear tip and where the world puts it)
SEED, HANDLE, TARGET = 0, (109.6, 48.3), (103.0, 39.4)
ZOOM = 4.0
LEARNING_RATE = 0.01  # a visible edit in a few steps (the docker's Advanced > Learning rate)


def history_scenario(run, k, win, ctl, tool, act, dock, w):
    from draggan_krita import kritadoc
    qwin = win.qwindow()
    model = os.environ.get("DRAGGAN_E2E_DEMO_MODEL", "demo")
    steps = int(os.environ.get("DRAGGAN_E2E_DEMO_STEPS", "16"))

    # the layout of the pictures: Krita on the left, the DragGAN docker floating beside it
    qwin.resize(1150, 1000)
    qwin.move(0, 0)
    dock.setFloating(True)
    dock.resize(445, 1000)
    dock.move(1155, 0)
    w(QCheckBox, "draggan_advanced").setChecked(False)  # a shorter docker for the pictures (its values still count)
    layers = [d for d in k.dockers() if d.objectName() == "KisLayerBox"]
    run.log("dockers", names=sorted(d.objectName() for d in k.dockers()))
    check(layers, "Krita's Layers docker not found")
    layers = layers[0]
    layers.show()
    layers.raise_()

    w(QSpinBox, "draggan_steps").setValue(steps)
    w(QSpinBox, "draggan_preview_every").setValue(2)
    w(QDoubleSpinBox, "draggan_lr").setValue(LEARNING_RATE)

    # New image from model: the demo model's seed
    combo = w(QComboBox, "draggan_model")
    check(combo.findData(model) >= 0, "model not offered", model=model,
          items=[combo.itemText(i) for i in range(combo.count())])
    combo.setCurrentIndex(combo.findData(model))
    w(QSpinBox, "draggan_seed").setValue(SEED)
    ndocs = len(k.documents())
    w(QPushButton, "draggan_new_image").click()
    yield from run.wait_for(lambda: len(k.documents()) > ndocs and kritadoc.active_document() is not None
                            and win.activeView() is not None, 120)
    yield 400
    doc = kritadoc.active_document()
    doc.setBatchmode(True)
    source = doc.activeNode()
    source_id = kritadoc.layer_id(source)
    W, H = doc.width(), doc.height()
    view = win.activeView()
    view.canvas().setZoomLevel(ZOOM)
    yield 600
    src_entry = ctl.layer_entry(doc, source)
    run.log("history_new_image", size=[W, H], source=source_id, entry=src_entry and vars(src_entry))
    check(src_entry is not None and not src_entry.is_result and src_entry.record.state_id,
          "the generated layer does not remember its first state", entry=src_entry and vars(src_entry))
    initial_state = src_entry.record.state_id
    check(src_entry.record.fingerprint == ctl.session_record(doc).fingerprint, "the source's record differs")

    if not tool.armed:
        act.trigger()
    yield from run.wait_for(lambda: tool.armed and tool.transform is not None and tool.canvas is not None
                            and kritadoc.same_document(tool._doc, doc), 10)
    yield 300
    canvas = tool.canvas
    shoot = Frames(run, canvas, tool, dock, w, layers, W, H)
    yield from shoot("new-image", "1. New image from model: the demo model, seed 0")
    pts = ctl.points_for(doc)
    pts.clear()
    for _ in range(2):  # Krita may eat the first click after a new view gets the focus
        yield from run.xclick(canvas, *tool.transform.map(*HANDLE))
        if len(pts):
            break
    yield from run.xclick(canvas, *tool.transform.map(*TARGET))
    check(len(pts) == 1 and near(pts.pairs[0][0], HANDLE) and near(pts.pairs[0][1], TARGET),
          "the points were not placed", pairs=pts.pairs)
    original = [list(p) for p in pts.handles()]
    yield from shoot("points", "2. The Drag tool: a handle (red) on the ear and its target (blue)")

    # 1. a drag: held at the gate after step 2, so its preview and progress are photographed
    check(not w(QLabel, "draggan_progress_text").text(), "the last picture's progress still shows")
    with gate.holding(DAEMON_URL):
        w(QPushButton, "draggan_run").click()
        yield 100
        check(ctl.running(), "the demo drag did not start", message=ctl.last_message)
        yield from run.wait_for(lambda: not ctl.running() or ctl.job.preview_step, 120)
        check(ctl.running() and ctl.job.preview_step, "no preview while the demo drag runs", result=ctl.last_result)
        yield 400
        yield from shoot("running", "3. Run: the preview layer and the handle follow the drag")
    first = yield from finished_run(run, ctl, "first")
    first_layer = kritadoc.find_layer(doc, first["layer_id"])
    check(first_layer is not None, "the first result layer is not in the document", result=first)
    first_pixels = pixels(first_layer, W, H)
    entry = ctl.layer_entry(doc, first_layer)
    run.log("history_first", result=first, entry=vars(entry), shown=pts.pairs, layer=pts.layer)
    check(first["from_state"] == initial_state, "the drag on the source did not start from its state",
          from_state=first["from_state"], initial=initial_state)
    check(entry.is_result and entry.base == source_id and entry.record.state_id == first["state_id"]
          and entry.record.state_id != initial_state, "the result layer does not remember its state",
          entry=vars(entry))
    check(kritadoc.layer_id(doc.activeNode()) == first["layer_id"], "the result layer is not selected")
    yield from run.wait_for(lambda: ctl.current_points().layer == first["layer_id"], 5)
    tracked = [list(p) for p in entry.record.handles]
    check(pts.handles() == tracked and tracked != original, "the overlay does not show the tracked handles",
          shown=pts.handles(), tracked=tracked, original=original)
    yield from shoot("result", "4. The result layer, with the handle where tracking left it")
    first_layer.setVisible(False)
    doc.refreshProjection()
    yield 500
    yield from shoot("before", "5. Before: the result layer hidden")
    first_layer.setVisible(True)
    doc.refreshProjection()
    yield 500
    yield from shoot("after", "6. After: the result layer shown")
    dock.widget().widget().grab().save(os.path.join(OUT_DIR, "krita-docker-history.png"))  # all of it, unscrolled

    # 2. one undo takes the result away: the source's original handles, and the same drag gives the same picture
    k.action("edit_undo").trigger()
    yield 800
    after_undo = kritadoc.layer_id(doc.activeNode())
    run.log("history_undo", selected=after_undo, source=source_id, layers=layer_names(doc))
    check(kritadoc.find_layer(doc, first["layer_id"]) is None, "one undo did not remove the result layer",
          layers=layer_names(doc))
    if after_undo != source_id:  # Krita selected another layer: the artist clicks the source
        doc.setActiveNode(source)
    yield from run.wait_for(lambda: ctl.current_points().layer == source_id, 5)
    check(pts.handles() == original, "after the undo the overlay does not show the original handles",
          shown=pts.handles(), original=original)
    yield 300
    check(red_at(tool, original[0]), "the overlay does not draw the original handle")
    yield from shoot("undone", "7. Undo: the result layer is gone, the original handle is back")
    w(QSpinBox, "draggan_preview_every").setValue(0)
    w(QPushButton, "draggan_run").click()
    again = yield from finished_run(run, ctl, "again")
    again_layer = kritadoc.find_layer(doc, again["layer_id"])
    same = pixels(again_layer, W, H) == first_pixels
    run.log("history_again", result=again, pixel_equal=same)
    check(again["from_state"] == initial_state, "the drag after the undo did not start from the source's state",
          from_state=again["from_state"])
    check(same, "the same drag after the undo does not give the first result again (a doubled edit?)",
          differing=differing(pixels(again_layer, W, H), first_pixels))

    # 3. a drag on the result layer continues from it: a second edit on top of the first
    yield from run.wait_for(lambda: ctl.current_points().layer == again["layer_id"], 5)
    check(pts.handles() == [list(p) for p in ctl.layer_entry(doc, again_layer).record.handles],
          "the result layer does not show its tracked handles", shown=pts.handles())
    w(QSpinBox, "draggan_steps").setValue(max(2, steps // 3))
    w(QPushButton, "draggan_run").click()
    cont = yield from finished_run(run, ctl, "continued")
    cont_layer = kritadoc.find_layer(doc, cont["layer_id"])
    cont_entry = ctl.layer_entry(doc, cont_layer)
    names = layer_names(doc)
    run.log("history_continue", result=cont, entry=vars(cont_entry), layers=names)
    check(cont["from_state"] == again["state_id"], "the drag on the result layer did not start from its state",
          from_state=cont["from_state"], result_state=again["state_id"])
    check(cont_entry.record.state_id not in (again["state_id"], initial_state) and cont_entry.base == source_id,
          "the continued result's record", entry=vars(cont_entry))
    check(pixels(cont_layer, W, H) != first_pixels, "the continued drag did not change the first result")
    check(layer_index(doc, cont_layer) == layer_index(doc, again_layer) + 1, "the second edit is not above the first",
          layers=names)
    yield from shoot("continued", "8. Run on a result layer: a second edit on top of the first")

    # 4. Reset to original on the continued result: back to the source, and the next drag starts from the original
    w(QSpinBox, "draggan_steps").setValue(steps)
    ctl.last_reset = None
    w(QPushButton, "draggan_reset_original").click()
    yield from run.wait_for(lambda: ctl.last_reset is not None, 60)
    message = w(QLabel, "draggan_message").text()
    run.log("history_reset", reset=ctl.last_reset, message=message, selected=kritadoc.layer_id(doc.activeNode()))
    check(ctl.last_reset["layer_id"] == source_id and ctl.last_reset["moved"] and not ctl.last_reset["lost"]
          and ctl.last_reset["state_id"] == initial_state, "Reset to original did not go back to the source",
          reset=ctl.last_reset)
    check("Reset to original" in message and "forgot the drags" in message, "no status line for the reset",
          message=message)
    yield from run.wait_for(lambda: kritadoc.layer_id(doc.activeNode()) == source_id
                            and ctl.current_points().layer == source_id, 5)
    check(pts.handles() == original, "after the reset the overlay does not show the original handles",
          shown=pts.handles())
    yield from shoot("reset", "9. Reset to original: the source selected, the original handle shown")
    w(QPushButton, "draggan_run").click()
    after_reset = yield from finished_run(run, ctl, "after reset")
    same = pixels(kritadoc.find_layer(doc, after_reset["layer_id"]), W, H) == first_pixels
    run.log("history_after_reset", result=after_reset, pixel_equal=same)
    check(after_reset["from_state"] == initial_state and same,
          "the drag after Reset to original does not start from the original", result=after_reset)

    # 5. the daemon lost the session: Reset says the next drag regenerates the picture, and it does
    from draggan_krita import daemon
    lost_session = after_reset["session"]
    daemon.Daemon(DAEMON_URL).delete_session(lost_session)
    ctl.last_reset = None
    w(QPushButton, "draggan_reset_original").click()
    yield from run.wait_for(lambda: ctl.last_reset is not None, 60)
    message = w(QLabel, "draggan_message").text()
    run.log("history_lost_reset", reset=ctl.last_reset, message=message)
    check(ctl.last_reset["lost"] and ctl.last_reset["layer_id"] == source_id
          and "generates the picture again from its seed" in message, "the reset of a lost session", message=message)
    yield from run.wait_for(lambda: kritadoc.layer_id(doc.activeNode()) == source_id, 5)
    w(QPushButton, "draggan_run").click()
    regenerated = yield from finished_run(run, ctl, "regenerated")
    same = pixels(kritadoc.find_layer(doc, regenerated["layer_id"]), W, H) == first_pixels
    run.log("history_regenerated", result=regenerated, pixel_equal=same)
    check(regenerated["session"] != lost_session, "the lost session was not regenerated", result=regenerated)
    check(same, "the regenerated picture's drag does not give the first result")
    act.trigger()
    yield 200


def finished_run(run, ctl, what, timeout_s=240):
    """Wait for the Run just started to end; its last_result, which must be ok."""
    yield 100
    yield from run.wait_for(lambda: not ctl.running(), timeout_s)
    result = ctl.last_result or {}
    check(result.get("ok") and result.get("layer_id"), "the %s drag failed" % what, result=result,
          message=ctl.last_message)
    yield 300
    return result


def near(p, q, tol=1.6):
    return p is not None and abs(p[0] - q[0]) <= tol and abs(p[1] - q[1]) <= tol


def pixels(node, W, H):
    return bytes(node.pixelData(0, 0, W, H))


def differing(a, b):
    return sum(1 for i in range(0, len(a), 4) if a[i:i + 4] != b[i:i + 4])


def layer_names(doc):
    return [n.name() for n in doc.topLevelNodes() if n.type() != "selectionmask"]


def layer_index(doc, node):
    from draggan_krita import kritadoc
    ids = [kritadoc.layer_id(n) for n in doc.topLevelNodes()]
    return ids.index(kritadoc.layer_id(node))


def overlay_colour(tool, point):
    """The colour the tool's overlay shows at the image point, or None when it shows nothing."""
    ov = tool.overlay
    if ov is None or not ov.isVisible():
        return None
    img = ov.grab().toImage()
    x, y = tool.transform.map(*point)
    s = img.width() / float(ov.width())
    return img.pixelColor(int(x * s), int(y * s))


def red_at(tool, point):
    """Whether the overlay draws a handle (red) at the image point."""
    col = overlay_colour(tool, point)
    return col is not None and col.red() > 180 and col.green() < 90 and col.blue() < 90


class Frames(object):
    """Photographs of the workflow: krita-workflow-NN-name.png, the canvas around the picture beside the
    DragGAN docker (from its Model group to its message) and the top of the Layers docker, with a
    caption, cut from a shot of the whole screen (krita-screen-NN-name.png)."""
    MARGIN = 36
    GAP = 10
    LAYERS_HEIGHT = 200  # the Layers docker's title, mode, opacity and the first few layers
    CAPTION_HEIGHT = 34
    BACKGROUND = QColor(49, 54, 59)

    def __init__(self, run, canvas, tool, dock, w, layers, W, H):
        self.run, self.canvas, self.tool, self.dock, self.w, self.layers = run, canvas, tool, dock, w, layers
        self.W, self.H = W, H
        self.n = 0

    def run_doc_refresh(self):
        doc = Krita.instance().activeDocument()
        if doc is not None:
            doc.refreshProjection()

    def _global(self, widget, rect=None):
        rect = rect or widget.rect()
        return QRect(widget.mapToGlobal(rect.topLeft()), rect.size())

    def __call__(self, name, caption):
        self.n += 1
        # the mouse off the canvas (Krita draws the brush outline where it is), the docker scrolled down
        yield from self.run.run_process(["xdotool", "mousemove", "1595", "995"])
        scroll = self.dock.findChild(QScrollArea)
        scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
        self.run_doc_refresh()
        yield 900  # the Layers docker's thumbnails follow a moment later
        screen_path = yield from self.run.screenshot("krita-screen-%02d-%s.png" % (self.n, name))
        screen = QImage(screen_path)
        t = self.tool.transform
        xs, ys = zip(*(t.map(x, y) for x, y in ((0, 0), (self.W, 0), (0, self.H), (self.W, self.H))))
        top = self._global(self.w(QComboBox, "draggan_model").parentWidget())
        bottom = self._global(self.w(QLabel, "draggan_message"))
        docker = QRect(top.left(), top.top(), top.width(), bottom.bottom() - top.top() + 6)
        docker = docker.intersected(self._global(scroll.viewport()))
        layers = self._global(self.layers)
        layers.setHeight(min(layers.height(), self.LAYERS_HEIGHT))
        right_h = docker.height() + self.GAP + layers.height()
        centre = self.canvas.mapToGlobal(QPoint(int((min(xs) + max(xs)) / 2), int((min(ys) + max(ys)) / 2)))
        width = int(max(xs) - min(xs)) + 2 * self.MARGIN
        height = max(int(max(ys) - min(ys)) + 2 * self.MARGIN, right_h)
        picture = QRect(centre.x() - width // 2, centre.y() - height // 2, width, height)
        picture = picture.intersected(self._global(self.canvas))
        out = QImage(picture.width() + self.GAP + max(docker.width(), layers.width()),
                     max(picture.height(), right_h) + self.CAPTION_HEIGHT, QImage.Format_RGB32)
        out.fill(self.BACKGROUND)
        p = QPainter(out)
        p.drawImage(0, 0, screen.copy(picture))
        p.drawImage(picture.width() + self.GAP, 0, screen.copy(docker))
        p.drawImage(picture.width() + self.GAP, docker.height() + self.GAP, screen.copy(layers))
        font = QFont(p.font())
        font.setPixelSize(17)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor(235, 235, 235))
        p.drawText(QRect(12, out.height() - self.CAPTION_HEIGHT, out.width() - 24, self.CAPTION_HEIGHT),
                   int(Qt.AlignVCenter | Qt.AlignLeft), caption)
        p.end()
        out.save(os.path.join(OUT_DIR, "krita-workflow-%02d-%s.png" % (self.n, name)))
        self.run.log("frame", name=name, picture=[picture.x(), picture.y(), picture.width(), picture.height()],
                     docker=[docker.x(), docker.y(), docker.width(), docker.height()],
                     layers=[layers.x(), layers.y(), layers.width(), layers.height()])
