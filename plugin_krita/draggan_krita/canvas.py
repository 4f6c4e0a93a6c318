"""The Drag tool on the canvas: an application-level event filter (Krita has no Python tool API)
and a transparent overlay widget that draws the points. GUI thread only.

While armed, left clicks on the canvas place/select/move points, right click on a point or
Delete removes it, Escape disarms. Everything else (pan, zoom, wheel, shortcuts) passes through.
Press/move/release are swallowed as complete pairs so Krita's own tool never sees half a stroke.
In Align mode the same clicks place and move the document's four landmarks (align.py) instead;
the overlay draws them and the square the model's framing makes of them.
"""
from PyQt5.QtCore import QEvent, QObject, QPointF, Qt, QTimer
from PyQt5.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF
from PyQt5.QtWidgets import QApplication, QWidget

from . import kritadoc
from .align import LANDMARKS
from .points import HANDLE, TARGET

HIT_RADIUS_PX = 10.0  # screen pixels
HANDLE_COLOR = QColor(230, 30, 30)
TARGET_COLOR = QColor(40, 90, 240)
LANDMARK_COLOR = QColor(40, 200, 90)
SQUARE_COLOR = QColor(250, 200, 40)
LANDMARK_TAGS = dict(zip(LANDMARKS, ("L", "R", "ML", "MR")))

_MOUSE = {QEvent.MouseButtonPress: "press", QEvent.MouseMove: "move", QEvent.MouseButtonRelease: "release",
          QEvent.MouseButtonDblClick: "press", QEvent.TabletPress: "press", QEvent.TabletMove: "move",
          QEvent.TabletRelease: "release"}


class Overlay(QWidget):
    """Draws handles (red), targets (blue) and arrows over the canvas, in screen pixels."""

    def __init__(self, tool, canvas):
        super(Overlay, self).__init__(canvas)
        self.tool = tool
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WA_TranslucentBackground)
        self.setAttribute(Qt.WA_NoSystemBackground)
        self.setFocusPolicy(Qt.NoFocus)
        self.setGeometry(canvas.rect())
        self.show()
        self.raise_()

    def paintEvent(self, _event):
        tool = self.tool
        points = tool.points()
        t = tool.transform
        if points is None or t is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        self._alignment(p, t)
        for i, (h, tg) in enumerate(points.pairs):
            hx, hy = t.map(h[0], h[1])
            if tg is not None:
                tx, ty = t.map(tg[0], tg[1])
                self._arrow(p, hx, hy, tx, ty)
            for role, pt, color in ((HANDLE, h, HANDLE_COLOR), (TARGET, tg, TARGET_COLOR)):
                if pt is None:
                    continue
                x, y = t.map(pt[0], pt[1])
                selected = points.selected == (i, role)
                p.setPen(QPen(QColor(255, 255, 255) if not selected else QColor(255, 220, 0), 2))
                p.setBrush(QBrush(color))
                r = 8.0 if selected else 6.5
                p.drawEllipse(QPointF(x, y), r, r)
        if tool.status_text:
            p.setPen(QColor(255, 255, 255))
            p.fillRect(6, 6, 12 + 7 * len(tool.status_text), 22, QColor(0, 0, 0, 140))
            p.drawText(12, 22, tool.status_text)
        p.end()

    def _alignment(self, p, t):
        """The landmarks (green, tagged L, R, ML, MR) and the square they frame (yellow, its top edge thicker)."""
        al = self.tool.alignment()
        if al is None or not len(al):
            return
        corners = self.tool.controller.alignment_square()
        if corners is not None:
            pts = [QPointF(*t.map(x, y)) for x, y in corners]
            for width, color in ((4.0, QColor(0, 0, 0, 160)), (2.0, SQUARE_COLOR)):
                p.setPen(QPen(color, width, Qt.DashLine))
                p.setBrush(Qt.NoBrush)
                p.drawPolygon(QPolygonF(pts))
                p.setPen(QPen(color, width + 2.0))
                p.drawLine(pts[0], pts[1])  # the model picture's top
        for i, (name, pt) in enumerate(zip(LANDMARKS, al.points)):
            x, y = t.map(pt[0], pt[1])
            selected = al.selected == (i, "landmark")
            p.setPen(QPen(QColor(255, 220, 0) if selected else QColor(255, 255, 255), 2))
            p.setBrush(QBrush(LANDMARK_COLOR))
            p.drawEllipse(QPointF(x, y), 6.0, 6.0)
            p.setPen(QColor(255, 255, 255))
            p.drawText(QPointF(x + 8, y - 8), LANDMARK_TAGS[name])

    def _arrow(self, p, x0, y0, x1, y1):
        p.setPen(QPen(QColor(255, 255, 255), 3.5))
        p.drawLine(QPointF(x0, y0), QPointF(x1, y1))
        p.setPen(QPen(QColor(20, 20, 20), 1.5))
        p.drawLine(QPointF(x0, y0), QPointF(x1, y1))
        dx, dy = x1 - x0, y1 - y0
        n = (dx * dx + dy * dy) ** 0.5
        if n < 1e-3:
            return
        ux, uy = dx / n, dy / n
        size = 12.0
        bx, by = x1 - ux * (size + 5), y1 - uy * (size + 5)
        path = QPainterPath(QPointF(x1 - ux * 5, y1 - uy * 5))
        path.lineTo(QPointF(bx - uy * size * 0.5, by + ux * size * 0.5))
        path.lineTo(QPointF(bx + uy * size * 0.5, by - ux * size * 0.5))
        path.closeSubpath()
        p.setPen(QPen(QColor(20, 20, 20), 1))
        p.setBrush(QBrush(QColor(255, 255, 255)))
        p.drawPath(path)


class DragTool(QObject):
    """Arms/disarms the Drag tool on the active view's canvas; owns the overlay."""

    POINTS, ALIGN = "points", "align"  # what clicks edit: the drag's points, or the alignment's landmarks

    def __init__(self, controller):
        super(DragTool, self).__init__()
        self.controller = controller
        self.armed = False
        self.mode = self.POINTS
        self.canvas = None
        self.overlay = None
        self.view = None
        self.transform = None
        self.dragging = None  # (index, role) while the left button moves a point
        self.swallow_release = set()
        self.status_text = ""
        self.log = []  # (kind, image x, image y) of handled clicks, for tests
        self._tick = 0
        self._doc = None
        self._timer = QTimer(self)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def points(self):
        return self.controller.current_points()

    def alignment(self):
        return self.controller.current_alignment()

    def editing(self):
        """What the clicks edit in the current mode: the point list or the alignment."""
        return self.alignment() if self.mode == self.ALIGN else self.points()

    def _edited(self):
        if self.mode == self.ALIGN:
            self.controller.alignment_edited()
        else:
            self.controller.points_edited()

    def set_mode(self, mode):
        if mode == self.mode:
            return
        self.mode, self.dragging = mode, None
        if self.armed:
            kritadoc.floating_message(self._hint())
        self.controller.tool_armed_changed(self.armed)
        self.refresh()

    def _hint(self):
        if self.mode == self.ALIGN:
            return ("DragGAN Align: click the left eye, the right eye, the left mouth corner and the right mouth "
                    "corner (left = on the image's left). Esc leaves the tool.")
        return "DragGAN: click to place a handle (red), then its target (blue). Esc leaves the tool."

    # -- arming ----------------------------------------------------------------------------
    def set_armed(self, armed):
        if armed == self.armed:
            return
        self.armed = armed
        app = QApplication.instance()
        if armed:
            app.installEventFilter(self)
            kritadoc.floating_message(self._hint())
        else:
            app.removeEventFilter(self)
            self.dragging = None
            self.mode = self.POINTS  # the tool arms for points again (the docker's Align arms it for landmarks)
        self._tick = -1  # look now
        self._poll()
        self.controller.tool_armed_changed(armed)

    def _poll(self):
        """Follow the active view: find its canvas, keep the overlay sized and the transform current.
        Cheap when idle: with the tool off and no overlay shown it looks only every 8th tick, and the
        canvas widget is searched again only every 8th tick (or when it is gone)."""
        self._tick += 1
        if not self.armed and self.overlay is None and self._tick % 8:
            return
        try:
            view = kritadoc.active_view()
            canvas = self.canvas
            if view is None:
                canvas = None
            else:
                doc = view.document()
                if (canvas is None or self._tick % 8 == 0 or not canvas.isVisible()
                        or not kritadoc.same_document(doc, self._doc)):
                    canvas = kritadoc.canvas_widget()
                    self._doc = doc
            points, al = self.points(), self.alignment()
            want = canvas is not None and points is not None and (self.armed or len(points) > 0
                                                                  or (al is not None and len(al) > 0))
            if canvas is not self.canvas or not want:
                if self.overlay is not None:
                    self.overlay.hide()
                    self.overlay.deleteLater()
                    self.overlay = None
                self.canvas = canvas
            self.view = view
            if not want:
                self.transform = None
                return
            t = kritadoc.image_to_widget(view, canvas)
            if self.overlay is None:
                self.overlay = Overlay(self, canvas)
            if self.overlay.geometry() != canvas.rect():
                self.overlay.setGeometry(canvas.rect())
            if self.transform is None or not t.almost_equal(self.transform, 1e-4):
                self.transform = t
                self.overlay.update()
        except RuntimeError:  # wrapped C++ object deleted (view closed)
            self.canvas, self.overlay, self.transform = None, None, None

    def refresh(self):
        if self.overlay is not None:
            self.overlay.update()

    # -- input -----------------------------------------------------------------------------
    def widget_to_image(self, x, y):
        return self.transform.inverted().map(x, y)

    def eventFilter(self, obj, event):
        try:
            return self._filter(obj, event)
        except Exception:  # noqa: BLE001 - never raise into Krita's event loop
            import traceback
            traceback.print_exc()
            return False

    def _filter(self, obj, event):
        et = event.type()
        if obj is not self.canvas or self.canvas is None:
            return False
        if et in (QEvent.ShortcutOverride, QEvent.KeyPress):
            key = event.key()
            if key in (Qt.Key_Escape, Qt.Key_Delete, Qt.Key_Backspace):
                if et == QEvent.ShortcutOverride:
                    event.accept()
                    return True
                if key == Qt.Key_Escape:
                    self.set_armed(False)
                else:
                    target = self.editing()
                    if target is not None and target.remove():
                        self._edited()
                return True
            return False
        kind = _MOUSE.get(et)
        if kind is None:
            return False
        if et == QEvent.MouseMove and not (event.buttons() & Qt.LeftButton) and self.dragging is None:
            return False
        if self.editing() is None or self.transform is None:
            return False
        pos = event.posF() if hasattr(event, "posF") else event.localPos()
        x, y = self.widget_to_image(pos.x(), pos.y())
        if kind == "press":
            return self.press(x, y, event.button())
        if kind == "move":
            return self.move(x, y)
        return self.release(x, y, event.button())

    # -- what a click does, in image pixels (the event filter calls these; so can tests) ---------------
    def press(self, x, y, button=Qt.LeftButton):
        """A press at image (x, y): left selects the point under it (to drag it) or places the next one;
        right removes the point under it. True when the press is the tool's (swallowed)."""
        target = self.editing()
        if target is None or self.transform is None:
            return False
        radius = HIT_RADIUS_PX / max(self.transform.scale_factor(), 1e-6)
        if button == Qt.LeftButton:
            hit = target.hit(x, y, radius)
            if hit is not None:
                target.select(hit)
                self.dragging = hit
                self.log.append(("select", x, y))
            else:
                self.dragging = target.place(x, y)
                self.log.append(("place", x, y))
            self.swallow_release.add(Qt.LeftButton)
            self._edited()
            self.refresh()
            return True
        if button == Qt.RightButton:
            hit = target.hit(x, y, radius)
            if hit is not None:
                target.remove(hit)
                self.log.append(("remove", x, y))
                self.swallow_release.add(Qt.RightButton)
                self._edited()
                self.refresh()
                return True
        return False

    def move(self, x, y):
        if self.dragging is not None:
            target = self.editing()
            if target is not None:
                target.move(self.dragging, x, y)
            self.refresh()
            return True
        return Qt.LeftButton in self.swallow_release

    def release(self, x, y, button=Qt.LeftButton):
        if button in self.swallow_release:
            self.swallow_release.discard(button)
            target = self.editing()
            if button == Qt.LeftButton and self.dragging is not None and target is not None:
                target.move(self.dragging, x, y)
                self.dragging = None
                self._edited()
            self.refresh()
            return True
        return False

    def click(self, x, y, button=Qt.LeftButton):
        """A press and its release at image (x, y), as a mouse click on the canvas does."""
        self.press(x, y, button)
        return self.release(x, y, button)

    def shutdown(self):
        self.set_armed(False)
        self._timer.stop()
