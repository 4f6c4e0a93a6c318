#!/usr/bin/env python3
"""Package the GIMP plug-in: refresh its copy of the shared daemon client, and build a zip.

    scripts/package_gimp.py            copy backend/client.py into the plug-in, write out/draggan-gimp-VERSION.zip
    scripts/package_gimp.py --sync     only refresh plugin_gimp/draggan/draggan_client.py
    scripts/package_gimp.py --check    exit 1 if the plug-in's copy differs from backend/client.py

The zip holds one folder, draggan/, to be unpacked into GIMP's plug-ins folder (see plugin_gimp/README.md).
Standard library only.
"""
import argparse
import shutil
import stat
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugin_gimp" / "draggan"
SOURCE = REPO / "backend" / "client.py"
COPY = PLUGIN / "draggan_client.py"
FILES = ("draggan.py", "draggan_logic.py", "draggan_watchdog.py", "draggan_client.py")


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "0"


def sync() -> None:
    if not COPY.exists() or COPY.read_bytes() != SOURCE.read_bytes():
        shutil.copyfile(SOURCE, COPY)
        print(f"updated {COPY.relative_to(REPO)} from {SOURCE.relative_to(REPO)}")


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"draggan-gimp-{version()}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for name in FILES:
            info = zipfile.ZipInfo.from_file(PLUGIN / name, f"draggan/{name}")
            mode = 0o755 if name == "draggan.py" else 0o644  # GIMP ignores a plug-in that is not executable
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, (PLUGIN / name).read_bytes())
        z.writestr("draggan/README.md", (REPO / "plugin_gimp" / "README.md").read_bytes())
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sync", action="store_true", help="only refresh the plug-in's copy of the client")
    p.add_argument("--check", action="store_true", help="fail if the plug-in's client copy is stale")
    p.add_argument("--out", default=str(REPO / "out"), help="folder for the zip (default out/)")
    args = p.parse_args(argv)
    if args.check:
        same = COPY.exists() and COPY.read_bytes() == SOURCE.read_bytes()
        if not same:
            print(f"{COPY.relative_to(REPO)} differs from {SOURCE.relative_to(REPO)}; run scripts/package_gimp.py "
                  f"--sync", file=sys.stderr)
        return 0 if same else 1
    sync()
    if not args.sync:
        print(build(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
