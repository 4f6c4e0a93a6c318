#!/usr/bin/env python3
"""Package the GIMP plug-in: refresh its copy of the client side shared with the Krita plug-in, build a zip.

The shared client side is the draggan_client/ package (daemon client, PNG codec, workflow, launcher),
copied unchanged into the plug-in folder as draggan/draggan_client/, because GIMP runs the folder as it is
(the copy is not committed: this script and scripts/install_gimp_plugin.sh make it).

    scripts/package_gimp.py            refresh the copy, write out/draggan-gimp-VERSION.zip
    scripts/package_gimp.py --sync     only refresh the copy
    scripts/package_gimp.py --check    exit 1 if the copy differs from its source

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
SHARED_SRC = REPO / "draggan_client"
SHARED = "draggan_client"  # the carried package's folder name inside the plug-in
OWN_FILES = ("draggan.py", "draggan_daemon_panel.py", "draggan_gimp.py", "draggan_logic.py", "draggan_live.py",
             "draggan_settings.py", "draggan_watchdog.py")


def shared_names() -> list[str]:
    """The carried package's modules, by name."""
    return sorted(p.name for p in SHARED_SRC.glob("*.py"))


def files() -> list[str]:
    """Every file of the plug-in folder that ships, relative to it."""
    return [*OWN_FILES, *(f"{SHARED}/{name}" for name in shared_names())]


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "0"


def stale() -> list[str]:
    """Names of the carried modules whose copy is missing or differs from its source, and of extra copies."""
    copy = PLUGIN / SHARED
    names = set(shared_names()) | ({p.name for p in copy.glob("*.py")} if copy.is_dir() else set())
    return sorted(name for name in names if not (copy / name).exists() or not (SHARED_SRC / name).exists()
                  or (copy / name).read_bytes() != (SHARED_SRC / name).read_bytes())


def sync() -> None:
    copy = PLUGIN / SHARED
    copy.mkdir(exist_ok=True)
    for name in stale():
        if (SHARED_SRC / name).exists():
            shutil.copyfile(SHARED_SRC / name, copy / name)
            print(f"updated {(copy / name).relative_to(REPO)}")
        else:
            (copy / name).unlink()
            print(f"removed {(copy / name).relative_to(REPO)}")


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"draggan-gimp-{version()}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for name in files():
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
            print(f"plugin_gimp/draggan/{SHARED}/{name} differs from draggan_client/{name}; "
                  f"run scripts/package_gimp.py --sync", file=sys.stderr)
        return 1 if differ else 0
    sync()
    if not args.sync:
        print(build(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
