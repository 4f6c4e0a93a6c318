#!/usr/bin/env python3
"""Copy the editors' end-to-end screenshots into docs/img/, and make the workflow GIFs from them.

The pictures in the docs are made by the e2e tests (tests/test_krita_e2e.py writes
out/krita-e2e/<version>/, tests/test_gimp_e2e.py out/gimp-e2e/<version>/), so they show what the
plug-ins really do; run the tests, then this:

    .venv/bin/python scripts/docs_pictures.py [--editor krita] [--out-dir out] [--skip-missing]

PICTURES and GIFS are the tables: one row per picture, a source under out/ and a name under docs/img/.
Needs Pillow (in the project's .venv) for the GIFs.
"""
import argparse
import glob
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_IMG = os.path.join(ROOT, "docs", "img")

# (editor, source under out/, name in docs/img/)
PICTURES = [
    ("krita", "krita-e2e/5.2/krita-docker-history.png", "krita-docker.png"),
    ("krita", "krita-e2e/5.2/krita-workflow-02-points.png", "krita-points.png"),
    ("krita", "krita-e2e/5.2-local/krita-daemon.png", "krita-daemon.png"),
    ("gimp", "gimp-e2e/3.2/gimp-workflow-1-dialog.png", "gimp-dialog.png"),
    ("gimp", "gimp-e2e/3.2/gimp-workflow-2-preview.png", "gimp-preview.png"),
    ("gimp", "gimp-e2e/3.2/gimp-workflow-3-result.png", "gimp-result.png"),
    ("gimp", "gimp-e2e/3.2/gimp-fit-preview.png", "gimp-fit.png"),
]

# (editor, frames under out/ (a glob, taken in name order), name in docs/img/, width in px (0: as taken),
#  ms per frame, ms on the last)
GIFS = [
    ("krita", "krita-e2e/5.2/krita-workflow-*.png", "krita-workflow.gif", 0, 1600, 3200),
    ("gimp", "gimp-e2e/3.2/gimp-workflow-*.png", "gimp-workflow.gif", 0, 1800, 3200),
]


def copy_pictures(out_dir, editors, skip_missing):
    missing = []
    for editor, source, name in PICTURES:
        if editors and editor not in editors:
            continue
        path = os.path.join(out_dir, source)
        if not os.path.isfile(path):
            missing.append(path)
            continue
        shutil.copyfile(path, os.path.join(DOCS_IMG, name))
        print("docs/img/%s <- %s" % (name, os.path.relpath(path, ROOT)))
    return _report(missing, skip_missing)


def make_gifs(out_dir, editors, skip_missing):
    missing = []
    for editor, pattern, name, width, ms, last_ms in GIFS:
        if editors and editor not in editors:
            continue
        frames = sorted(glob.glob(os.path.join(out_dir, pattern)))
        if not frames:
            missing.append(os.path.join(out_dir, pattern))
            continue
        write_gif(frames, os.path.join(DOCS_IMG, name), width, ms, last_ms)
        print("docs/img/%s <- %d frames (%s)" % (name, len(frames), ", ".join(os.path.basename(f) for f in frames)))
    return _report(missing, skip_missing)


def write_gif(frames, dest, width, ms, last_ms):
    """An animated GIF of the PNG frames, scaled to width (0: as they are; every frame to the first
    one's size), each frame with its own palette and dithered (a shared palette bands the picture)."""
    from PIL import Image
    images = [Image.open(f).convert("RGB") for f in frames]
    w, h = images[0].size
    size = (width, int(round(h * width / float(w)))) if width and w != width else (w, h)
    images = [im.resize(size, Image.LANCZOS) if im.size != size else im for im in images]
    quantized = [im.quantize(colors=256, method=Image.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
                 for im in images]
    durations = [ms] * (len(quantized) - 1) + [last_ms]
    quantized[0].save(dest, save_all=True, append_images=quantized[1:], duration=durations, loop=0, optimize=True)


def _report(missing, skip_missing):
    for path in missing:
        print("missing: %s (run the editor's e2e test first)" % os.path.relpath(path, ROOT), file=sys.stderr)
    return 0 if skip_missing or not missing else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--editor", action="append", choices=sorted({row[0] for row in PICTURES + GIFS}),
                    help="only this editor's pictures (repeatable; default: all)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "out"), help="where the e2e tests wrote (default: out/)")
    ap.add_argument("--skip-missing", action="store_true", help="leave pictures whose screenshots are missing as they are")
    args = ap.parse_args(argv)
    os.makedirs(DOCS_IMG, exist_ok=True)
    rc = copy_pictures(args.out_dir, args.editor, args.skip_missing)
    return make_gifs(args.out_dir, args.editor, args.skip_missing) or rc


if __name__ == "__main__":
    sys.exit(main())
