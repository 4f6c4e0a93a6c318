"""The handle/target point list and its editing rules, without Qt or Krita.

Points are float image pixels. A pair is a handle (red) and, once placed, its target (blue).
Clicking empty canvas places the next missing target, or else a new handle; clicking near a point
selects it and drags it; removing a handle removes its pair, removing a target leaves the handle.
The list round-trips through JSON, stored as a document annotation so it is saved in the .kra.
"""
import json

from .marks import Marks

HANDLE, TARGET = "handle", "target"
ANNOTATION_POINTS = "draggan/points"
FORMAT_VERSION = 1


class PointList(Marks):
    def __init__(self, width=0, height=0):
        super(PointList, self).__init__(width, height)
        self.pairs = []  # [[handle (x, y), target (x, y) or None], ...]
        self.layer = None  # the uniqueId of the layer whose points these are (the controller switches them)

    # -- queries ---------------------------------------------------------------------------
    def __len__(self):
        return len(self.pairs)

    def complete_pairs(self):
        return [(h, t) for h, t in self.pairs if t is not None]

    def handles(self):
        return [list(h) for h, t in self.pairs if t is not None]

    def targets(self):
        return [list(t) for h, t in self.pairs if t is not None]

    def point(self, index, role):
        h, t = self.pairs[index]
        return h if role == HANDLE else t

    def hit(self, x, y, radius):
        """(index, role) of the nearest point within radius (image px), else None."""
        best, best_d = None, radius * radius
        for i, (h, t) in enumerate(self.pairs):
            for role, p in ((HANDLE, h), (TARGET, t)):
                if p is None:
                    continue
                d = (p[0] - x) ** 2 + (p[1] - y) ** 2
                if d <= best_d:
                    best, best_d = (i, role), d
        return best

    # -- edits -----------------------------------------------------------------------------
    def place(self, x, y):
        """A click on empty canvas: the target of a pair that lacks one, else a new handle."""
        p = self._clamp((x, y))
        for i, (h, t) in enumerate(self.pairs):
            if t is None:
                self.pairs[i][1] = p
                self.selected = (i, TARGET)
                self.changed()
                return self.selected
        self.pairs.append([p, None])
        self.selected = (len(self.pairs) - 1, HANDLE)
        self.changed()
        return self.selected

    def move(self, sel, x, y):
        i, role = sel
        self.pairs[i][0 if role == HANDLE else 1] = self._clamp((x, y))
        self.changed()

    def remove(self, sel=None):
        sel = sel if sel is not None else self.selected
        if sel is None:
            return False
        i, role = sel
        if not 0 <= i < len(self.pairs):
            return False
        if role == HANDLE:
            del self.pairs[i]
        else:
            self.pairs[i][1] = None
        self.selected = None
        self.changed()
        return True

    def clear(self):
        self.pairs, self.selected = [], None
        self.changed()

    def set_handles(self, handles):
        """Tracked handle positions from the daemon (one per complete pair, in order)."""
        complete = [i for i, (h, t) in enumerate(self.pairs) if t is not None]
        for i, p in zip(complete, handles):
            self.pairs[i][0] = self._clamp(p)
        self.changed()

    def set_pairs(self, pairs):
        """Show other points (another layer's): [[handle, target or None], ...]; bad input shows none."""
        try:
            self.pairs = [[self._clamp(h), self._clamp(t) if t is not None else None] for h, t in pairs or []]
        except (TypeError, ValueError, IndexError):
            self.pairs = []
        self.selected = None
        self.changed()

    # -- persistence -----------------------------------------------------------------------
    def to_json(self):
        return json.dumps({"version": FORMAT_VERSION, "width": self.width, "height": self.height,
                           "pairs": [[list(h), list(t) if t is not None else None] for h, t in self.pairs]})

    def load_json(self, text):
        """Replace the points with those of to_json() output; bad input leaves an empty list."""
        pairs = []
        try:
            data = json.loads(text)
            for h, t in data.get("pairs", []):
                pairs.append([self._clamp(h), self._clamp(t) if t is not None else None])
        except (ValueError, TypeError, AttributeError, IndexError):
            pairs = []
        self.pairs, self.selected = pairs, None
        self.changed()
        return self

    def describe(self):
        rows = []
        for i, (h, t) in enumerate(self.pairs):
            tt = "(%.1f, %.1f)" % tuple(t) if t is not None else "click to place"
            rows.append("%d: (%.1f, %.1f) -> %s" % (i + 1, h[0], h[1], tt))
        return rows
