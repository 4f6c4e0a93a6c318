"""scripts/docs_pictures.py: its tables, and a workflow GIF made from frames."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("docs_pictures", ROOT / "scripts" / "docs_pictures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_picture_has_one_source_and_a_name_of_its_own():
    mod = _module()
    names = [row[2] for row in mod.PICTURES + mod.GIFS]
    assert len(names) == len(set(names))
    for editor, source, name in mod.PICTURES:
        assert editor in ("krita", "gimp") and not Path(source).is_absolute() and "/" not in name


def test_a_gif_of_the_frames_scaled_to_its_width(tmp_path):
    mod = _module()
    frames = []
    for i, colour in enumerate(((200, 30, 30), (30, 30, 200), (30, 160, 60))):
        path = tmp_path / ("frame-%02d.png" % i)
        Image.new("RGB", (400, 200), colour).save(path)
        frames.append(str(path))
    dest = tmp_path / "out.gif"
    mod.write_gif(frames, str(dest), 200, 500, 1500)
    with Image.open(dest) as gif:
        assert gif.size == (200, 100) and gif.n_frames == 3
        durations, colours = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            colours.append(gif.convert("RGB").getpixel((100, 50)))
    assert durations == [500, 500, 1500]
    assert colours == [(200, 30, 30), (30, 30, 200), (30, 160, 60)]


def test_missing_screenshots_are_reported(tmp_path, capsys):
    mod = _module()
    assert mod.copy_pictures(str(tmp_path), ["krita"], skip_missing=False) == 1
    assert "missing" in capsys.readouterr().err
    assert mod.copy_pictures(str(tmp_path), ["krita"], skip_missing=True) == 0
