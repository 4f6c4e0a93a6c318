"""scripts/package_krita.py: the release zip's layout, the shared client copied unchanged, and the
zip installing with Krita's own importer (when Krita is installed)."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")


def _package():
    spec = importlib.util.spec_from_file_location("package_krita", ROOT / "scripts" / "package_krita.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("krita-zip") / "draggan_krita.zip"
    _package().build_zip(str(out))
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "draggan_client").glob("*.py")))
def test_the_carried_client_side_is_identical(built_zip, tmp_path, name):
    source = (ROOT / "draggan_client" / name).read_bytes()
    with zipfile.ZipFile(built_zip) as z:
        assert z.read("draggan_krita/draggan_client/" + name) == source
    staged = _package().stage(str(tmp_path))
    assert (Path(staged) / "draggan_krita" / "draggan_client" / name).read_bytes() == source


def test_zip_layout(built_zip):
    with zipfile.ZipFile(built_zip) as z:
        names = set(z.namelist())
        assert {"draggan_krita.desktop", "draggan_krita/", "draggan_krita/__init__.py",
                "draggan_krita.action", "draggan_krita/draggan_client/client.py", "draggan_krita/draggan_client/pngcodec.py"} <= names
        assert "draggan_krita/draggan_krita.action" not in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        desktop = z.read("draggan_krita.desktop").decode()
        assert "X-KDE-Library=draggan_krita" in desktop and "ServiceTypes=Krita/PythonPlugin" in desktop
        action = z.read("draggan_krita.action").decode()
        assert '<Action name="draggan_tool">' in action and "<shortcut>Ctrl+Alt+D</shortcut>" in action


def test_zip_is_reproducible(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    _package().build_zip(str(a))
    _package().build_zip(str(b))
    assert a.read_bytes() == b.read_bytes()


STDLIB_OK = {"base64", "collections", "dataclasses", "json", "math", "os", "re", "shlex", "shutil", "signal",
             "struct", "subprocess", "sys", "threading", "time", "traceback", "zlib", "http", "socket", "urllib",
             "typing"}


def test_plugin_imports_only_stdlib_pyqt5_krita_and_parses_as_python38(built_zip):
    """Krita's Windows/macOS/AppImage builds have no numpy/PIL/requests; the 5.1 AppImage is Python 3.8."""
    with zipfile.ZipFile(built_zip) as z:
        for name in z.namelist():
            if not name.endswith(".py"):
                continue
            tree = ast.parse(z.read(name).decode(), name, feature_version=(3, 8))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    mods = [node.module]
                else:
                    continue
                for m in mods:
                    top = m.split(".")[0]
                    assert top in STDLIB_OK or top in ("PyQt5", "krita"), "%s imports %s" % (name, m)


@pytest.mark.skipif(not IMPORTER.exists(), reason="Krita's plugin_importer.py not installed")
def test_krita_importer_installs_the_zip(built_zip, tmp_path):
    res = tmp_path / "krita"
    (res / "pykrita").mkdir(parents=True)
    (res / "actions").mkdir()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    p = subprocess.run(["/usr/bin/python3", str(IMPORTER), str(built_zip), str(res)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Imported plugin: DragGAN Studio" in p.stdout
    assert (res / "pykrita" / "draggan_krita.desktop").exists()
    assert (res / "pykrita" / "draggan_krita" / "draggan_client" / "client.py").exists()
    assert (res / "actions" / "draggan_krita.action").exists()
