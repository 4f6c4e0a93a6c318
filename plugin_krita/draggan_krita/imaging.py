"""PNG <-> Krita BGRA conversion: Qt's codec when PyQt5 is there (fast, thread-safe QImage),
else the stdlib codec. Safe to call from worker threads (QImage, never QPixmap)."""
from . import pngcodec

try:
    from PyQt5.QtCore import QBuffer, QByteArray, QIODevice
    from PyQt5.QtGui import QImage
except ImportError:  # outside Krita (unit tests)
    QImage = None


def decode_png_bgra(data, width=None, height=None):
    """(width, height, BGRA bytes) of PNG data, scaled to width x height when given and different."""
    if QImage is not None:
        img = QImage.fromData(QByteArray(bytes(data)), "PNG")
        if img.isNull():
            raise pngcodec.PngError("the daemon sent an image Qt cannot read")
        if width and height and (img.width(), img.height()) != (width, height):
            from PyQt5.QtCore import Qt
            img = img.scaled(width, height, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
        img = img.convertToFormat(QImage.Format_ARGB32)  # = Krita's BGRA on little-endian
        w, h = img.width(), img.height()
        ptr = img.constBits()
        ptr.setsize(img.sizeInBytes() if hasattr(img, "sizeInBytes") else img.byteCount())
        raw = bytes(ptr)
        stride = img.bytesPerLine()
        if stride != w * 4:
            raw = b"".join(raw[y * stride:y * stride + w * 4] for y in range(h))
        return w, h, raw
    w, h, bgra = pngcodec.decode_to_bgra(data)
    if width and height and (w, h) != (width, height):
        raise pngcodec.PngError("image is %dx%d, expected %dx%d" % (w, h, width, height))
    return w, h, bgra


def encode_bgra_png(bgra, width, height):
    return pngcodec.encode_bgra(bgra, width, height)
