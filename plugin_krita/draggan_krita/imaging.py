"""PNG <-> Krita BGRA conversion: Qt's codec when PyQt5 is there (fast, thread-safe QImage),
else the shared stdlib codec (draggan_client/pngcodec.py, carried in this package). Safe to call
from worker threads (QImage, never QPixmap). Krita's RGBA/U8 layers are BGRA in memory; the
daemon speaks RGB(A) PNG."""
from .draggan_client import pngcodec

try:
    from PyQt5.QtCore import QByteArray
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
    w, h, channels, pixels = pngcodec.decode_png(data)
    bgra = to_bgra(pixels, channels)
    if width and height and (w, h) != (width, height):
        raise pngcodec.PngError("image is %dx%d, expected %dx%d" % (w, h, width, height))
    return w, h, bgra


def encode_bgra_png(bgra, width, height):
    """RGBA PNG of Krita BGRA bytes."""
    return pngcodec.encode_png(width, height, 4, bgra_to_rgba(bytes(bgra)))


def encode_mask_png(mask, width, height):
    """Grayscale PNG of one byte per pixel (255 = editable)."""
    return pngcodec.encode_png(width, height, 1, bytes(mask))


def bgra_to_rgba(bgra):
    out = bytearray(bgra)
    out[0::4] = bgra[2::4]
    out[2::4] = bgra[0::4]
    return bytes(out)


def to_bgra(pixels, channels):
    """BGRA bytes (Krita RGBA/U8 layout) from gray, gray+alpha, RGB or RGBA pixels."""
    pixels = bytes(pixels)
    n = len(pixels) // channels
    out = bytearray(b"\xff" * (4 * n))
    if channels == 4:
        out[0::4], out[1::4], out[2::4], out[3::4] = pixels[2::4], pixels[1::4], pixels[0::4], pixels[3::4]
    elif channels == 3:
        out[0::4], out[1::4], out[2::4] = pixels[2::3], pixels[1::3], pixels[0::3]
    elif channels == 2:
        out[0::4] = out[1::4] = out[2::4] = pixels[0::2]
        out[3::4] = pixels[1::2]
    else:
        out[0::4] = out[1::4] = out[2::4] = pixels
    return bytes(out)
