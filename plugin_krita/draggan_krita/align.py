"""The Align mode's landmarks and the square they frame, without Qt or Krita (issue 16).

A real photo is framed for the model the way its training images were: the artist clicks the left
eye, the right eye, the left and the right mouth corner ("left" = on the image's left), and the
daemon crops the oriented square FFHQ's recipe makes of them (docs/api.md, "Alignment"). The plug-in
draws that square with the same recipe (draggan_core/alignment.py's box_from_landmarks, here in
plain Python for Krita's interpreter). The landmarks are the document's, saved as an annotation.
"""
import json
import math

from .marks import Marks

LANDMARKS = ("left_eye", "right_eye", "mouth_left", "mouth_right")
LABELS = {"left_eye": "left eye", "right_eye": "right eye", "mouth_left": "left mouth corner",
          "mouth_right": "right mouth corner"}
ANNOTATION_ALIGN = "draggan/align"
FORMAT_VERSION = 1
LANDMARK = "landmark"  # the role in a selection (index, role), like points.HANDLE
# the recipe's constants per framing (GET /models "framing"): half side = max(eye |e|, mouth |m|),
# centre = eye midpoint + shift m; the same numbers as draggan_core/alignment.py's FFHQ and DEMO
RECIPES = {"ffhq": (2.0, 1.8, 0.1), "demo": (2.715733, 5.494505, -0.939011)}
MIN_DISTANCE = 1.0  # px: eye to eye, eye midpoint to mouth midpoint (the daemon's MIN_LANDMARK_DISTANCE)


class AlignError(ValueError):
    """The landmarks do not give a square; the message tells the artist what to click."""


def uses_landmarks(framing):
    return framing in RECIPES


def square(framing, left_eye, right_eye, mouth_left, mouth_right):
    """The oriented square's corners (top-left, top-right, bottom-right, bottom-left, as the model
    image sees them) in layer pixels. Raises AlignError for a framing without landmarks, landmarks too
    close together, or eyes given the wrong way round (the mouth above the eyes)."""
    if framing not in RECIPES:
        raise AlignError("The model frames its pictures as a centred crop (framing %r): eye and mouth "
                         "landmarks do not apply to it." % (framing,))
    eye_scale, mouth_scale, shift = RECIPES[framing]
    mx, my = (left_eye[0] + right_eye[0]) / 2.0, (left_eye[1] + right_eye[1]) / 2.0
    ex, ey = right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]
    mmx, mmy = (mouth_left[0] + mouth_right[0]) / 2.0 - mx, (mouth_left[1] + mouth_right[1]) / 2.0 - my
    if math.hypot(ex, ey) < MIN_DISTANCE or math.hypot(mmx, mmy) < MIN_DISTANCE:
        raise AlignError("The eyes, and the mouth and the eyes, must be at least 1 px apart.")
    if ex * mmy - ey * mmx <= 0:
        raise AlignError("The mouth is not below the eyes: click the eye on the image's left first, then the "
                         "right eye, then the left and the right mouth corner.")
    ax, ay = ex + mmy, ey - mmx  # e + m turned a quarter turn: the square's x axis
    n = math.hypot(ax, ay)
    ux, uy = ax / n, ay / n
    vx, vy = -uy, ux
    half = max(eye_scale * math.hypot(ex, ey), mouth_scale * math.hypot(mmx, mmy))
    cx, cy = mx + shift * mmx, my + shift * mmy
    return [(cx + sx * half * ux + sy * half * vx, cy + sx * half * uy + sy * half * vy)
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


class Alignment(Marks):
    """The document's landmarks in click order (at most four), with the point list's editing calls
    (hit, place, select, move, remove), so the canvas tool edits either the same way."""

    def __init__(self, width=0, height=0):
        super(Alignment, self).__init__(width, height)
        self.points = []  # [(x, y)] in LANDMARKS order

    # -- queries ---------------------------------------------------------------------------
    def __len__(self):
        return len(self.points)

    def complete(self):
        return len(self.points) == len(LANDMARKS)

    def next_name(self):
        """The landmark the next click places, or None when all four are there."""
        return LANDMARKS[len(self.points)] if not self.complete() else None

    def landmarks(self):
        """{name: [x, y]} for the four landmarks (the session's `align`), or None while incomplete."""
        if not self.complete():
            return None
        return {name: [round(p[0], 3), round(p[1], 3)] for name, p in zip(LANDMARKS, self.points)}

    def square(self, framing):
        """The square the framing's recipe makes of the landmarks, or None (incomplete, a box framing,
        or landmarks that give none)."""
        if not self.complete() or not uses_landmarks(framing):
            return None
        try:
            return square(framing, *self.points)
        except AlignError:
            return None

    def problem(self, framing):
        """What stops the landmarks framing the picture for a model of this framing, or None."""
        if not self.points:
            return None
        if not self.complete():
            return "Alignment: %d of 4 landmarks; click the %s next (or Clear alignment)." % (
                len(self.points), LABELS[self.next_name()])
        if framing is not None and not uses_landmarks(framing):
            return None  # the Run says the landmarks are not used
        try:
            square(framing or "ffhq", *self.points)
        except AlignError as exc:
            return "Alignment: %s" % exc
        return None

    def hit(self, x, y, radius):
        best, best_d = None, radius * radius
        for i, p in enumerate(self.points):
            d = (p[0] - x) ** 2 + (p[1] - y) ** 2
            if d <= best_d:
                best, best_d = (i, LANDMARK), d
        return best

    # -- edits -----------------------------------------------------------------------------
    def place(self, x, y):
        """A click on empty canvas: the next landmark; once all four are there, None (move one instead)."""
        if self.complete():
            return None
        self.points.append(self._clamp((x, y)))
        self.selected = (len(self.points) - 1, LANDMARK)
        self.changed()
        return self.selected

    def move(self, sel, x, y):
        self.points[sel[0]] = self._clamp((x, y))
        self.changed()

    def remove(self, sel=None):
        """Removing a landmark removes it and those clicked after it (they are placed in order)."""
        sel = sel if sel is not None else self.selected
        if sel is None or not 0 <= sel[0] < len(self.points):
            return False
        del self.points[sel[0]:]
        self.selected = None
        self.changed()
        return True

    def clear(self):
        self.points, self.selected = [], None
        self.changed()

    def set_landmarks(self, landmarks):
        """{name: [x, y]} (all four) as the alignment."""
        self.points = [self._clamp(landmarks[name]) for name in LANDMARKS]
        self.selected = None
        self.changed()

    # -- persistence -----------------------------------------------------------------------
    def to_json(self):
        return json.dumps({"version": FORMAT_VERSION, "width": self.width, "height": self.height,
                           "points": [list(p) for p in self.points]})

    def load_json(self, text):
        """Replace the landmarks with those of to_json() output; bad input leaves none."""
        try:
            data = json.loads(text)
            pts = [self._clamp(p) for p in data.get("points", [])][:len(LANDMARKS)]
        except (ValueError, TypeError, AttributeError, IndexError):
            pts = []
        self.points, self.selected = pts, None
        self.changed()
        return self

    def describe(self):
        rows = ["%s: (%.1f, %.1f)" % (LABELS[name], p[0], p[1]) for name, p in zip(LANDMARKS, self.points)]
        if not self.complete():
            rows.append("next: click the %s" % LABELS[self.next_name()])
        return rows


def align_for_run(alignment, framing):
    """What a Run sends as Edit.align, and a note for the artist: (landmarks or None, note or None).
    Raises AlignError when the alignment is started but cannot frame the picture."""
    if alignment is None or not len(alignment):
        return None, None
    if not alignment.complete():
        raise AlignError(alignment.problem(framing))
    if framing is not None and not uses_landmarks(framing):
        return None, ("The model frames its pictures as a centred crop (%s): the eye and mouth landmarks are "
                      "not used." % framing)
    square(framing or "ffhq", *alignment.points)  # raises for eyes the wrong way round
    return alignment.landmarks(), None
