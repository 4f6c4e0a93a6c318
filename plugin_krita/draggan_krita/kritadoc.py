"""Everything that touches libkis (Krita's Python API) and Krita's widgets. GUI thread only.

Kept small on purpose: the rest of the plug-in works on plain data (see jobspec.py, points.py,
geometry.py) and can be tested outside Krita.
"""
from krita import Krita
from PyQt5.QtCore import QByteArray
from PyQt5.QtWidgets import QMdiArea, QWidget

from .geometry import Affine, fallback_image_to_widget, image_to_widget_52

CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
# Krita 5.1 fallback: Canvas.rotation() and mirror() as they are, mirroring applied before the rotation
# (measured in Krita 5.1.5 against the rendered canvas: exact at 25 degrees + mirror, see the e2e test)
FALLBACK_ROTATION_SIGN = 1.0
FALLBACK_MIRROR_FIRST = True


def app():
    return Krita.instance()


def krita_version():
    return app().version()


def has_flake_transforms(view):
    return view is not None and hasattr(view, "flakeToImageTransform")


def on_application_closing(callback):
    """Call callback() when Krita quits (Notifier.applicationClosing: the last window is closing)."""
    notifier = app().notifier()
    notifier.setActive(True)
    notifier.applicationClosing.connect(callback)


def active_view():
    win = app().activeWindow()
    return win.activeView() if win is not None else None


def active_document():
    """The active document when it is fully initialised (it has an active node), else None."""
    doc = app().activeDocument()
    if doc is None or doc.activeNode() is None:
        return None
    return doc


def same_document(a, b):
    if a is None or b is None:
        return False
    try:
        return a == b
    except Exception:  # noqa: BLE001 - older SIP wrappers without operator==
        return a.rootNode() == b.rootNode()


def document_open(doc):
    return any(same_document(doc, d) for d in app().documents())


# -- annotations ---------------------------------------------------------------------------------

def read_annotation(doc, key):
    try:
        data = doc.annotation(key)
    except Exception:  # noqa: BLE001
        return None
    data = bytes(data) if data is not None else b""
    return data.decode("utf-8") if data else None


def write_annotation(doc, key, text, description="DragGAN Studio"):
    doc.setAnnotation(key, description, QByteArray(text.encode("utf-8")))


# -- pixels ----------------------------------------------------------------------------------------

def check_color_mode(doc):
    if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
        return ("DragGAN needs an 8-bit RGB/Alpha image (this one is %s/%s): use Image > Convert Image "
                "Color Space first." % (doc.colorModel(), doc.colorDepth()))
    return None


def is_paint_layer(node):
    return node is not None and node.type() == "paintlayer"


def layer_pixels(node, width, height):
    return bytes(node.pixelData(0, 0, width, height))


def selection_bytes(doc):
    sel = doc.selection()
    if sel is None:
        return None
    return bytes(sel.pixelData(0, 0, doc.width(), doc.height()))


def new_document(width, height, name, bgra, layer_name):
    """A new RGBA/U8 document showing `bgra`, opened in the active window."""
    k = app()
    doc = k.createDocument(width, height, name, "RGBA", "U8", "", 72.0)
    layers = [n for n in doc.topLevelNodes() if is_paint_layer(n)]
    node = layers[0] if len(layers) == 1 else None
    if node is None:
        node = doc.createNode(layer_name, "paintlayer")
        doc.rootNode().addChildNode(node, None)
    node.setName(layer_name)
    node.setPixelData(QByteArray(bgra), 0, 0, width, height)
    doc.refreshProjection()
    win = k.activeWindow()
    if win is not None:
        win.addView(doc)
    doc.setActiveNode(node)
    return doc, node


def add_layer_above(doc, source, name):
    """A new paint layer right above `source` (one undo step)."""
    node = doc.createNode(name, "paintlayer")
    parent = source.parentNode() or doc.rootNode()
    parent.addChildNode(node, source)
    return node


def layer_id(node):
    """The layer's uniqueId as text ("{...}"), saved with the .kra; None for no layer."""
    if node is None:
        return None
    try:
        return node.uniqueId().toString()
    except RuntimeError:  # the wrapped layer is gone
        return None


def find_layer(doc, uid):
    """The layer of the document with that uniqueId (undone or deleted layers are not found), else None."""
    if not uid:
        return None
    todo = list(doc.rootNode().childNodes())
    while todo:
        node = todo.pop()
        if layer_id(node) == uid:
            return node
        todo.extend(node.childNodes())
    return None


def active_layer(doc):
    return doc.activeNode() if doc is not None else None


def select_layer(doc, node):
    doc.setActiveNode(node)


def write_layer(doc, node, bgra, width, height):
    node.setPixelData(QByteArray(bgra), 0, 0, width, height)
    doc.refreshProjection()


def remove_layer(node):
    try:
        node.remove()
    except Exception:  # noqa: BLE001 - already gone (e.g. undone by the user)
        pass


def floating_message(text, ms=3000):
    view = active_view()
    if view is not None and hasattr(view, "showFloatingMessage"):
        view.showFloatingMessage(text, app().icon("krita_tool_transform"), ms, 1)


# -- canvas widget and view transform -------------------------------------------------------

def canvas_widget(view=None):
    """The canvas QWidget of the active view (KisOpenGLCanvas2 or KisQPainterCanvas)."""
    win = app().activeWindow()
    if win is None:
        return None
    qwin = win.qwindow()
    area = qwin.findChild(QMdiArea)
    sub = area.activeSubWindow() if area is not None else None
    for w in (sub.findChildren(QWidget) if sub is not None else qwin.findChildren(QWidget)):
        if w.metaObject().className() in CANVAS_CLASSES and w.isVisible():
            return w
    return None


def image_to_widget(view, canvas):
    """Affine image px -> canvas widget px for the view (5.2: exact; 5.1: approximate fallback).

    Our image pixels have their centres at integers (the daemon's convention); Krita's image
    coordinates have pixel i spanning [i, i + 1), hence the half-pixel shift."""
    return Affine.translate(0.5, 0.5) * _krita_image_to_widget(view, canvas)


def _krita_image_to_widget(view, canvas):
    if has_flake_transforms(view):
        return image_to_widget_52(Affine.from_qt(view.flakeToImageTransform()),
                                  Affine.from_qt(view.flakeToCanvasTransform()))
    c = view.canvas()
    doc = view.document()
    scroll_x = scroll_y = 0.0
    ctrl = canvas.parentWidget().parentWidget() if canvas is not None and canvas.parentWidget() else None
    if ctrl is not None and hasattr(ctrl, "horizontalScrollBar"):
        scroll_x, scroll_y = ctrl.horizontalScrollBar().value(), ctrl.verticalScrollBar().value()
    return fallback_image_to_widget(c.zoomLevel(), doc.resolution(), scroll_x, scroll_y,
                                    FALLBACK_ROTATION_SIGN * c.rotation(), c.mirror(), doc.width(), doc.height(),
                                    FALLBACK_MIRROR_FIRST)


# -- settings --------------------------------------------------------------------------------

class KritaSettingsStore(object):
    """Settings.load/save backend on kritarc, group [draggan]."""

    def get(self, key, default=""):
        return app().readSetting("draggan", key, default)

    def set(self, key, value):
        app().writeSetting("draggan", key, str(value))
