"""draggan_client/catalogue.py: the daemon's models in the artist's words, as both plug-ins show them."""
from draggan_client import catalogue

CATALOGUE = [
    {"name": "demo", "resolution": 64, "width": 64, "height": 64, "domain": "demo", "licence": "MIT",
     "downloaded": True, "downloading": False, "downloadable": False, "size": None, "note": ""},
    {"name": "zoo-tiny", "resolution": 64, "width": 64, "height": 64, "domain": "test animals",
     "licence": "test licence", "downloaded": False, "downloading": False, "downloadable": True, "size": 312000,
     "note": "a test model"},
    {"name": "on-its-way", "resolution": 256, "domain": "faces", "licence": "CC", "downloaded": False,
     "downloading": True, "downloadable": True, "size": None, "note": ""},
    {"name": "by-hand", "resolution": 512, "domain": "cars", "licence": "ask", "downloaded": False,
     "downloading": False, "downloadable": False, "size": None, "note": "ask the studio for the file."},
    {"name": "old-daemon", "resolution": 32},  # a daemon before downloads lists only usable models
]


def test_which_models_can_be_used_and_downloaded():
    assert catalogue.entry_for(CATALOGUE, "by-hand")["resolution"] == 512
    assert catalogue.entry_for(CATALOGUE, "nope") is None and catalogue.entry_for(None, "demo") is None
    assert [catalogue.usable(e) for e in CATALOGUE] == [True, False, False, False, True]
    assert [catalogue.can_download(e) for e in CATALOGUE] == [False, True, False, False, False]
    assert not catalogue.can_download(None)


def test_the_licence_question_and_why_a_model_cannot_be_used_yet():
    title, text = catalogue.download_question(CATALOGUE[1])
    assert title == "Download zoo-tiny"
    assert "Licence: test licence" in text and "312.0 kB" in text and "a test model" in text
    assert "unknown size" in catalogue.download_question(CATALOGUE[2])[1]
    assert catalogue.not_usable_message(CATALOGUE[1]) == \
        "The model zoo-tiny is not downloaded yet: press Download first (312.0 kB)."
    assert catalogue.not_usable_message(CATALOGUE[1], "use Filters > DragGAN > Daemon...") == \
        "The model zoo-tiny is not downloaded yet: use Filters > DragGAN > Daemon... first (312.0 kB)."
    assert "still downloading" in catalogue.not_usable_message(CATALOGUE[2])
    assert catalogue.not_usable_message(CATALOGUE[3]) == \
        "The model by-hand is not downloaded yet: ask the studio for the file."


def test_model_labels_say_what_is_not_downloaded():
    assert catalogue.model_label({"name": "demo", "resolution": 128, "width": 128, "height": 128,
                                 "domain": "cartoon cats", "downloaded": True}) == "demo (128x128, cartoon cats)"
    assert catalogue.model_label({"name": "ffhq", "resolution": 512, "domain": "faces", "downloaded": False,
                                 "size": 381_000_000}) == "ffhq (512x512, faces, not downloaded, 381.0 MB)"
    assert catalogue.model_label({"name": "mine.pt"}) == "mine.pt"


def test_sizes_in_words():
    assert [catalogue.format_size(n) for n in (None, 12, 1500, 2_500_000, 3_000_000_000)] == \
        ["?", "12 bytes", "1.5 kB", "2.5 MB", "3.0 GB"]
