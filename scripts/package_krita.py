#!/usr/bin/env python3
"""Build the Krita plug-in zip: dist/draggan_krita.zip, for Tools > Scripts > Import Python Plugin from File.

The zip holds draggan_krita.desktop, draggan_krita.action (default shortcuts) and the draggan_krita/
package (with README.md), plus the client side both plug-ins share, copied unchanged into the
package: draggan_client/ as draggan_krita/draggan_client/.

    python3 scripts/package_krita.py [--out dist/draggan_krita.zip]
    python3 scripts/package_krita.py --stage DIR   # unpacked layout in DIR (tests, development)
    python3 scripts/package_krita.py --inplace     # copy draggan_client/ into plugin_krita/draggan_krita/ (dev installs)

Standard library only.
"""
import argparse
import os
import shutil
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_SRC = os.path.join(ROOT, "plugin_krita")
MODULE = "draggan_krita"
# the client side it shares with the GIMP plug-in, carried as a subpackage
SHARED_SRC = os.path.join(ROOT, "draggan_client")
SHARED = "draggan_client"


def _shared_files():
    """(source path, path relative to the package) of the carried client-side modules."""
    if not os.path.isdir(SHARED_SRC):
        raise SystemExit("draggan_client/ is missing; the plug-in needs it")
    return [(os.path.join(SHARED_SRC, name), SHARED + "/" + name)
            for name in sorted(os.listdir(SHARED_SRC)) if name.endswith(".py")]
DEFAULT_OUT = os.path.join(ROOT, "dist", MODULE + ".zip")


def _package_files():
    """(source path, path inside the zip) of every file that ships."""
    # the .action file (default shortcuts) sits at the top level: the importer copies it to
    # <resources>/actions/; a copy inside the package would make Krita load the actions twice
    files = [(os.path.join(PLUGIN_SRC, MODULE + ".desktop"), MODULE + ".desktop"),
             (os.path.join(PLUGIN_SRC, MODULE + ".action"), MODULE + ".action")]
    pkg = os.path.join(PLUGIN_SRC, MODULE)
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", SHARED) and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            src = os.path.join(dirpath, name)
            files.append((src, os.path.relpath(src, PLUGIN_SRC).replace(os.sep, "/")))
    readme = os.path.join(PLUGIN_SRC, "README.md")
    if os.path.exists(readme):
        files.append((readme, MODULE + "/README.md"))
    files += [(src, MODULE + "/" + rel) for src, rel in _shared_files()]
    return files


def build_zip(out=DEFAULT_OUT):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    files = _package_files()
    dirs = sorted({arc.rsplit("/", 1)[0] + "/" for _src, arc in files if "/" in arc})
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for d in dirs:  # Krita's importer finds the package by its directory entry
            info = zipfile.ZipInfo(d, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o40755 << 16) | 0x10
            z.writestr(info, b"")
        for src, arc in files:
            info = zipfile.ZipInfo(arc, date_time=(2024, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(src, "rb") as f:
                z.writestr(info, f.read())
    os.replace(tmp, out)
    return out


def stage(dest):
    """The unpacked zip layout under dest (dest/draggan_krita.desktop, dest/draggan_krita/...)."""
    shutil.rmtree(os.path.join(dest, MODULE), ignore_errors=True)
    for src, arc in _package_files():
        path = os.path.join(dest, arc)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(src, path)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--stage", metavar="DIR")
    ap.add_argument("--inplace", action="store_true")
    args = ap.parse_args(argv)
    if args.stage:
        print(stage(args.stage))
    elif args.inplace:
        dest = os.path.join(PLUGIN_SRC, MODULE, SHARED)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        for src, rel in _shared_files():
            shutil.copyfile(src, os.path.join(PLUGIN_SRC, MODULE, rel))
        print(dest)
    else:
        print(build_zip(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
