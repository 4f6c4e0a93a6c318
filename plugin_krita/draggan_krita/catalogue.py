"""The daemon's model catalogue as the docker shows it: which entry a name is, whether it can be used or
downloaded, and the words for the licence question and for a model that is not downloaded yet.

Plain data (the dicts DaemonClient.catalogue() returns), no Qt or libkis, so it is tested outside Krita.
"""
from .draggan_client.workflow import format_size, model_label


def entry_for(catalogue, name):
    """The catalogue entry named `name`, or None (a name typed by hand, or a daemon that does not know it)."""
    for entry in catalogue or ():
        if entry.get("name") == name:
            return entry
    return None


def usable(entry):
    """It can be used now (downloaded or built in); an entry from a daemon without downloads is."""
    return bool(entry.get("downloaded", True))


def can_download(entry):
    """The Download button applies: not there yet, not on its way, and the catalogue says where to get it."""
    return entry is not None and not usable(entry) and not entry.get("downloading") and bool(entry.get("downloadable"))


def labels(catalogue):
    """(label, name) per entry, for the model menu, in the daemon's order."""
    return [(model_label(e), e.get("name")) for e in catalogue or () if e.get("name")]


def download_question(entry):
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


def not_usable_message(entry):
    """Why a model of the catalogue cannot make an image yet, and what to do."""
    name = entry.get("name")
    if entry.get("downloading"):
        return "The model %s is still downloading; wait until it is done." % name
    if entry.get("downloadable"):
        return "The model %s is not downloaded yet: press Download first%s." % (
            name, " (%s)" % format_size(entry["size"]) if entry.get("size") else "")
    note = entry.get("note") or "the daemon cannot download it; put its file into the daemon's models folder"
    return "The model %s is not downloaded yet: %s." % (name, note.rstrip("."))
