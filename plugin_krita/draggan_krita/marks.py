"""What the canvas tool edits, without Qt or Krita: marks on the image (the drag's points, the Align
mode's landmarks) kept inside it, one selected, and listeners told of every change (the overlay,
the document's annotation)."""
from .geometry import clamp_point


class Marks(object):
    """The shared part of PointList and Alignment; subclasses keep the marks and their editing rules."""

    def __init__(self, width=0, height=0):
        self.width, self.height = width, height
        self.selected = None  # (index, role) or None
        self.listeners = []

    def changed(self):
        for fn in list(self.listeners):
            fn()

    def _clamp(self, p):
        if self.width and self.height:
            return clamp_point(p[0], p[1], self.width, self.height)
        return (float(p[0]), float(p[1]))

    def select(self, sel):
        self.selected = sel
        self.changed()
