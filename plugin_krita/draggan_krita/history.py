"""What each layer of a document remembers about the daemon state that shows its picture. Plain data.

A document keeps one entry per layer the plug-in made or dragged, keyed by the layer's uniqueId, in
the annotation draggan/layers (saved in the .kra). An entry holds the SessionRecord of the state that
shows the layer's picture, with the fingerprint of the layer's pixels, so a layer painted over since
is not trusted blindly (the shared workflow compares the fingerprint). A source layer's record names
the picture's first state (generated, or fitted by inversion); a result layer's names the state its
drag made, and the tracked handles. A drag starts from the state of the layer it runs on, so an
undone result layer is undone for the next drag too. The overlay shows a result layer's tracked
handles (or the points the artist edited on it) and the document's own points on any other layer.
"""
import json

from .draggan_client import workflow

ANNOTATION_LAYERS = "draggan/layers"
FORMAT_VERSION = 1
MAX_ENTRIES = 200  # per document; the oldest go first (an undone layer's entry stays while a redo could bring it back)
SOURCE, RESULT = "source", "result"


class LayerEntry(object):
    """One layer's memory. kind: SOURCE (shows a picture its drags start from) or RESULT (made by a
    drag); base: a result's original layer (where the first drag of its chain ran), for Reset to
    original; points: the pairs the artist edited on a result layer (None: its tracked handles)."""

    def __init__(self, record, kind=SOURCE, base=None, points=None, seq=0):
        self.record, self.kind, self.base, self.points, self.seq = record, kind, base, points, seq

    @property
    def is_result(self):
        return self.kind == RESULT

    def pairs(self):
        """The pairs a result layer shows: the artist's edit of them, else its tracked handles and targets."""
        if self.points is not None:
            return [[list(h), list(t) if t is not None else None] for h, t in self.points]
        return [[list(h), list(t)] for h, t in zip(self.record.handles, self.record.targets)]

    def to_dict(self):
        return {"record": json.loads(self.record.to_json()), "kind": self.kind, "base": self.base,
                "points": self.points, "seq": self.seq}

    @classmethod
    def from_dict(cls, data):
        """The entry, or None when it is damaged (a damaged entry reads as no memory: the layer is sent
        as any other picture)."""
        if not isinstance(data, dict):
            return None
        record = workflow.SessionRecord.from_json(json.dumps(data.get("record")))
        kind = data.get("kind")
        base, seq = data.get("base"), data.get("seq", 0)
        if record is None or kind not in (SOURCE, RESULT) or not isinstance(base, (str, type(None))):
            return None
        if not isinstance(seq, int) or isinstance(seq, bool):
            seq = 0
        return cls(record, kind, base, _pairs_or_none(data.get("points")), seq)


def _pairs_or_none(value):
    """[[handle, target or None], ...] of finite numbers, or None when value is not such a list."""
    if not isinstance(value, list):
        return None
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and _point(pair[0])
                and (pair[1] is None or _point(pair[1]))):
            return None
        pairs.append([[float(v) for v in pair[0]], [float(v) for v in pair[1]] if pair[1] is not None else None])
    return pairs


def _point(p):
    return (isinstance(p, list) and len(p) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e9 for v in p))


class LayerHistory(object):
    """The entries of one document (uniqueId -> LayerEntry)."""

    def __init__(self):
        self.entries = {}
        self._seq = 0

    @classmethod
    def from_json(cls, text):
        history = cls()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        layers = data.get("layers") if isinstance(data, dict) else None
        for uid, raw in (layers.items() if isinstance(layers, dict) else ()):
            entry = LayerEntry.from_dict(raw)
            if entry is not None and isinstance(uid, str) and uid:
                history.entries[uid] = entry
                history._seq = max(history._seq, entry.seq)
        return history

    def to_json(self):
        return json.dumps({"version": FORMAT_VERSION,
                           "layers": {uid: e.to_dict() for uid, e in sorted(self.entries.items())}}, sort_keys=True)

    def get(self, uid):
        return self.entries.get(uid) if uid else None

    def record_for(self, uid):
        entry = self.get(uid)
        return entry.record if entry is not None else None

    def _put(self, uid, entry):
        self._seq += 1
        entry.seq = self._seq
        self.entries[uid] = entry
        while len(self.entries) > MAX_ENTRIES:
            oldest = min(self.entries, key=lambda k: self.entries[k].seq)
            del self.entries[oldest]
        return entry

    def remember_source(self, uid, record, fingerprint):
        """The layer shows the picture of record's state, and its drags start there."""
        return self._put(uid, LayerEntry(_with_fingerprint(record, fingerprint), SOURCE))

    def remember_result(self, uid, record, fingerprint, source_uid):
        """A drag run on the layer source_uid made the layer uid, showing record's state."""
        source = self.get(source_uid)
        base = source.base if source is not None and source.is_result and source.base else source_uid
        return self._put(uid, LayerEntry(_with_fingerprint(record, fingerprint), RESULT, base))

    def set_points(self, uid, pairs):
        """The artist edited the points shown on the layer uid: kept with a result layer (True); any
        other layer shows the document's points, which the caller stores (False)."""
        entry = self.get(uid)
        if entry is None or not entry.is_result:
            return False
        entry.points = _pairs_or_none([[list(h), list(t) if t is not None else None] for h, t in pairs]) or []
        return True

    def shown_pairs(self, uid, document_pairs):
        """The points the layer uid shows: a result layer's own, else the document's."""
        entry = self.get(uid)
        return entry.pairs() if entry is not None and entry.is_result else document_pairs


def _with_fingerprint(record, fingerprint):
    data = json.loads(record.to_json())
    data["fingerprint"] = fingerprint
    return workflow.SessionRecord(**data)


# -- Reset to original -------------------------------------------------------------------------------

def reset_target(history, uid, layer_exists):
    """Where Reset to original on the layer uid lands: (layer to select, base_found). A result layer
    goes back to its original layer while that is still in the document (the layer that shows the
    original picture); otherwise the layer itself starts from the original from now on."""
    entry = history.get(uid)
    if entry is not None and entry.is_result and entry.base and entry.base != uid and layer_exists(entry.base):
        return entry.base, True
    return uid, False


def lost_session_record(record):
    """The record to keep when the daemon lost the session at a reset: the next drag regenerates a
    generated picture from its seed (its first state) or fits the layer again."""
    data = json.loads(record.to_json())
    data.update(handles=[], targets=[], state_id=None)
    if data["origin"] == workflow.DRAGGED and data.get("seed") is not None:
        data["origin"] = workflow.GENERATED
    return workflow.SessionRecord(**data)


def reset_message(record, lost=False, moved_to_original=False, kept_result=False):
    """The docker's status line after Reset to original."""
    real = record.origin == workflow.REAL
    if lost:
        again = ("fits the layer into the model again (GAN inversion)" if real or record.seed is None
                 else "generates the picture again from its seed")
        return ("Reset to original: the daemon no longer has this picture's session (it restarted or dropped it), "
                "so the next drag %s and starts from the original. The original handles are shown." % again)
    where = ("The original layer is selected; the" if moved_to_original else "The")
    text = ("Reset to original: the daemon forgot the drags%s. %s next drag starts from the original picture, "
            "with the original handles shown." % (" (the layer's inversion is kept)" if real else "", where))
    if kept_result:
        text += " This layer still shows its edit (its original layer is gone)."
    return text
