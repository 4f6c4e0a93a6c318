"""The daemon's model catalogue in the artist's words: which models can be used, which downloaded, a
model menu's line, the licence question before a download, and why a model cannot be used yet.

Works on the plain dicts DaemonClient.catalogue() returns (an entry from a daemon without downloads
counts as usable). Standard library only, Python 3.8 syntax: carried by both plug-ins.
"""
from typing import Any, Dict, Iterable, Optional, Tuple

Entry = Dict[str, Any]


def entry_for(catalogue: Optional[Iterable[Entry]], name: Optional[str]) -> Optional[Entry]:
    """The catalogue entry named `name`, or None (a name typed by hand, or a daemon that does not know it)."""
    for entry in catalogue or ():
        if entry.get("name") == name:
            return entry
    return None


def usable(entry: Entry) -> bool:
    """It can make pictures now (downloaded or built in)."""
    return bool(entry.get("downloaded", True))


def can_download(entry: Optional[Entry]) -> bool:
    """A download applies: not there yet, not on its way, and the catalogue says where to get it."""
    return entry is not None and not usable(entry) and not entry.get("downloading") and bool(entry.get("downloadable"))


def model_label(entry: Dict[str, Any]) -> str:
    """A model menu's line for one entry of DaemonClient.catalogue(): name, size in pixels, domain, and
    for a model not downloaded yet its file size."""
    size = "{}x{}".format(entry.get("width") or entry.get("resolution"), entry.get("height") or entry.get("resolution")) \
        if entry.get("resolution") else ""
    details = [d for d in (size, entry.get("domain")) if d]
    if not entry.get("downloaded", True):
        details.append("not downloaded" + (", {}".format(format_size(entry["size"])) if entry.get("size") else ""))
    return "{} ({})".format(entry.get("name"), ", ".join(details)) if details else str(entry.get("name"))


def format_size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return "{:.1f} {}".format(n / scale, unit)
    return "{} bytes".format(n)


def download_question(entry: Entry) -> Tuple[str, str]:
    """(title, text) of the question asked before a download: the artist accepts the model's licence."""
    name = entry.get("name")
    size = format_size(entry["size"]) if entry.get("size") else "an unknown size"
    lines = ["Download the model %s (%s) into the daemon's models folder?" % (name, size), "",
             "Licence: %s" % (entry.get("licence") or "not stated")]
    if entry.get("domain"):
        lines.append("It draws: %s" % entry["domain"])
    if entry.get("note"):
        lines.append("Note: %s" % entry["note"])
    lines += ["", "By downloading it you accept its licence."]
    return "Download %s" % name, "\n".join(lines)


def not_usable_message(entry: Entry, where: str = "press Download") -> str:
    """Why a catalogue model cannot make an image yet, and what to do (where: the editor's way to download)."""
    name = entry.get("name")
    if entry.get("downloading"):
        return "The model %s is still downloading; wait until it is done." % name
    if entry.get("downloadable"):
        return "The model %s is not downloaded yet: %s first%s." % (
            name, where, " (%s)" % format_size(entry["size"]) if entry.get("size") else "")
    note = entry.get("note") or "the daemon cannot download it; put its file into the daemon's models folder"
    return "The model %s is not downloaded yet: %s." % (name, note.rstrip("."))
