#!/usr/bin/env python3
"""Package the GIMP plug-in: refresh its copies of the modules shared with the Krita plug-in, build a zip.

The shared modules are backend/client.py (the daemon client) and backend/pngcodec.py (stdlib PNG),
kept in the plug-in folder as draggan_client.py and draggan_png.py, because GIMP runs the folder as it is.

    scripts/package_gimp.py            refresh the copies, write out/draggan-gimp-VERSION.zip
    scripts/package_gimp.py --sync     only refresh the copies
    scripts/package_gimp.py --check    exit 1 if a copy differs from its source

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
SHARED = {"draggan_client.py": REPO / "backend" / "client.py", "draggan_png.py": REPO / "backend" / "pngcodec.py"}
FILES = ("draggan.py", "draggan_logic.py", "draggan_watchdog.py", *SHARED)


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "0"


def stale() -> list[str]:
    """Names of the plug-in's shared-module copies that differ from their sources."""
    return [name for name, src in SHARED.items()
            if not (PLUGIN / name).exists() or (PLUGIN / name).read_bytes() != src.read_bytes()]


def sync() -> None:
    for name in stale():
        shutil.copyfile(SHARED[name], PLUGIN / name)
        print(f"updated {(PLUGIN / name).relative_to(REPO)} from {SHARED[name].relative_to(REPO)}")


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
    p.add_argument("--sync", action="store_true", help="only refresh the plug-in's copies of the shared modules")
    p.add_argument("--check", action="store_true", help="fail if a shared-module copy is stale")
    p.add_argument("--out", default=str(REPO / "out"), help="folder for the zip (default out/)")
    args = p.parse_args(argv)
    if args.check:
        differ = stale()
        for name in differ:
            print(f"{(PLUGIN / name).relative_to(REPO)} differs from {SHARED[name].relative_to(REPO)}; "
                  f"run scripts/package_gimp.py --sync", file=sys.stderr)
        return 1 if differ else 0
    sync()
    if not args.sync:
        print(build(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
