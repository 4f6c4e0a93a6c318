"""Coordinate mapping between the canvas widget and the image, without Qt.

`Affine` follows QTransform's conventions (x' = m11*x + m21*y + dx, y' = m12*x + m22*y + dy;
`a * b` applies a first), so a QTransform converts losslessly with `Affine.from_qt` and back.

Krita 5.2+ exposes the view's flake transforms; image -> widget is
`inverse(flakeToImage) * flakeToCanvas` (zoom, pan, rotation and mirroring included).
Krita 5.1 lacks them; `fallback_image_to_widget` rebuilds the transform from the zoom level, the
image resolution, the scroll offsets (Krita's document offset) and the canvas rotation/mirror.
"""
import math


class Affine(object):
    __slots__ = ("m11", "m12", "m21", "m22", "dx", "dy")

    def __init__(self, m11=1.0, m12=0.0, m21=0.0, m22=1.0, dx=0.0, dy=0.0):
        self.m11, self.m12, self.m21, self.m22 = float(m11), float(m12), float(m21), float(m22)
        self.dx, self.dy = float(dx), float(dy)

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def translate(cls, tx, ty):
        return cls(dx=tx, dy=ty)

    @classmethod
    def scale(cls, sx, sy=None):
        return cls(m11=sx, m22=sx if sy is None else sy)

    @classmethod
    def rotate(cls, degrees):
        """Clockwise on screen (y down), like QTransform.rotate."""
        a = math.radians(degrees)
        c, s = math.cos(a), math.sin(a)
        return cls(m11=c, m12=s, m21=-s, m22=c)

    @classmethod
    def from_qt(cls, t):
        return cls(t.m11(), t.m12(), t.m21(), t.m22(), t.dx(), t.dy())

    def to_tuple(self):
        return (self.m11, self.m12, self.m21, self.m22, self.dx, self.dy)

    # -- algebra -------------------------------------------------------------------------
    def __mul__(self, other):
        """self first, then other (QTransform semantics)."""
        a, b = self, other
        return Affine(a.m11 * b.m11 + a.m12 * b.m21, a.m11 * b.m12 + a.m12 * b.m22,
                      a.m21 * b.m11 + a.m22 * b.m21, a.m21 * b.m12 + a.m22 * b.m22,
                      a.dx * b.m11 + a.dy * b.m21 + b.dx, a.dx * b.m12 + a.dy * b.m22 + b.dy)

    def determinant(self):
        return self.m11 * self.m22 - self.m12 * self.m21

    def inverted(self):
        d = self.determinant()
        if abs(d) < 1e-12:
            raise ValueError("transform is not invertible")
        m11, m12, m21, m22 = self.m22 / d, -self.m12 / d, -self.m21 / d, self.m11 / d
        return Affine(m11, m12, m21, m22, -(self.dx * m11 + self.dy * m21), -(self.dx * m12 + self.dy * m22))

    def map(self, x, y):
        return (self.m11 * x + self.m21 * y + self.dx, self.m12 * x + self.m22 * y + self.dy)

    def scale_factor(self):
        """Screen pixels per image pixel (mean of the axes), for constant-size hit radii."""
        return math.sqrt(abs(self.determinant()))

    def is_mirrored(self):
        return self.determinant() < 0

    def almost_equal(self, other, eps=1e-6):
        return all(abs(a - b) <= eps for a, b in zip(self.to_tuple(), other.to_tuple()))

    def __repr__(self):
        return "Affine(%s)" % ", ".join("%.4g" % v for v in self.to_tuple())


def image_to_widget_52(flake_to_image, flake_to_canvas):
    """Krita 5.2+: image px -> canvas widget px from the view's two flake transforms (Affine)."""
    return flake_to_image.inverted() * flake_to_canvas


def fallback_image_to_widget(zoom_level, resolution, scroll_x, scroll_y, rotation=0.0, mirror=False,
                             image_w=0.0, image_h=0.0, mirror_first=True):
    """Krita 5.1 approximation, rebuilt the way Krita's KisCoordinatesConverter places the canvas:
    scale by zoomLevel*72/resolution, mirror and rotate, then translate so that the bounding box
    of the transformed image rectangle starts at minus the document offset (the scroll bar values).
    Image coordinates here are Krita's (pixel i spans [i, i + 1))."""
    s = float(zoom_level) * 72.0 / float(resolution or 72.0)
    t = Affine.scale(s)
    if mirror and mirror_first:
        t = t * Affine.scale(-1.0, 1.0)
    if rotation:
        t = t * Affine.rotate(rotation)
    if mirror and not mirror_first:
        t = t * Affine.scale(-1.0, 1.0)
    corners = [t.map(x, y) for x, y in ((0, 0), (image_w, 0), (0, image_h), (image_w, image_h))]
    min_x = min(p[0] for p in corners)
    min_y = min(p[1] for p in corners)
    return t * Affine.translate(-scroll_x - min_x, -scroll_y - min_y)


def clamp_point(x, y, width, height):
    """A point inside the image (pixel centres 0..w-1, 0..h-1)."""
    return (min(max(float(x), 0.0), max(width - 1.0, 0.0)), min(max(float(y), 0.0), max(height - 1.0, 0.0)))
