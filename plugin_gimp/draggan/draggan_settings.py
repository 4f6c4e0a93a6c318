"""The GIMP plug-in's stored settings: the daemon's address and token, stored once for every DragGAN
procedure, and how Filters > DragGAN > Daemon... starts the local daemon.

A small JSON file, $XDG_CONFIG_HOME/draggan/gimp.json (~/.config/draggan/gimp.json; %APPDATA%\\draggan\\
gimp.json on Windows), not GIMP's own per-procedure settings: those are per procedure and GIMP fills them
in only for interactive runs, and the address must be one for all three procedures and for scripts.
Written atomically with mode 0600 (it holds the token). A damaged file reads as the defaults plus a
message for the artist. Standard library only, importable without gi (tests/test_gimp_logic.py).
"""
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

from draggan_client.client import DEFAULT_URL, normalize_url
from draggan_client.launcher import DaemonSettings

FILE_NAME = "gimp.json"
URL_ENV = "DRAGGAN_URL"  # the address when none is stored (as before the Daemon... procedure existed)
TOKEN_ENV = "DRAGGAN_TOKEN"
MAX_FILE_BYTES = 64 * 1024  # the file holds a few short strings; anything bigger is not ours
MAX_TEXT = 4096  # longest stored string (a path or an argument list)


@dataclass
class Settings:
    url: str = ""  # the daemon's address; empty: $DRAGGAN_URL, else DEFAULT_URL
    token: str = ""  # the daemon's access token; empty: $DRAGGAN_TOKEN, else none
    command: str = ""  # the `draggan` program; empty: the project's .venv, else PATH (launcher.find_command)
    project_dir: str = ""  # the unpacked project folder; empty: $DRAGGAN_PROJECT
    extra_args: str = ""  # more `draggan serve` arguments (e.g. --catalogue FILE --models DIR --device cpu)
    keep_running: bool = False  # the local daemon outlives GIMP
    local_pid: int = 0  # the local daemon this plug-in started (0: none), for Stop
    local_url: str = ""  # its address

    def daemon_settings(self) -> DaemonSettings:
        return DaemonSettings(command=self.command, project_dir=self.project_dir, extra_args=self.extra_args,
                              keep_running=self.keep_running)


STRINGS = ("url", "token", "command", "project_dir", "extra_args", "local_url")


def config_path(env: Optional[Mapping[str, str]] = None) -> str:
    """Where the settings live."""
    env = os.environ if env is None else env
    if os.name == "nt":
        base = env.get("APPDATA") or os.path.expanduser("~")
    else:
        base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "draggan", FILE_NAME)


def from_dict(data: Any) -> Settings:
    """Settings from the file's object; ValueError naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise ValueError("it does not hold a JSON object")
    known = {f.name for f in fields(Settings)}
    values: Dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            continue  # a newer plug-in's field: ignored, not an error
        if key in STRINGS:
            if not isinstance(value, str) or len(value) > MAX_TEXT or "\0" in value:
                raise ValueError("'{}' must be text of at most {} characters".format(key, MAX_TEXT))
        elif key == "keep_running":
            if not isinstance(value, bool):
                raise ValueError("'keep_running' must be true or false")
        elif key == "local_pid":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 31:
                raise ValueError("'local_pid' must be a process id")
        values[key] = value
    return Settings(**values)


def load(path: Optional[str] = None) -> Tuple[Settings, Optional[str]]:
    """The stored settings, and a message for the artist when the file could not be used (then the
    defaults are returned; the next save replaces the file). A missing file is no error."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return Settings(), None
    except OSError as e:
        return Settings(), "The DragGAN settings file {} cannot be read ({}); using the defaults.".format(
            path, e.strerror or e)
    try:
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError("it is larger than {} bytes".format(MAX_FILE_BYTES))
        return from_dict(json.loads(raw.decode("utf-8"))), None
    except ValueError as e:  # also JSON and UTF-8 errors
        return Settings(), ("The DragGAN settings file {} is damaged ({}); using the defaults. Save the settings "
                            "in Filters > DragGAN > Daemon... to replace it.".format(path, e))


def save(settings: Settings, path: Optional[str] = None) -> str:
    """Write the settings atomically (a temporary file in the same folder, then renamed over the old one),
    readable by this user only; returns the path. OSError when it cannot be written."""
    path = path or config_path()
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    text = json.dumps(asdict(settings), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".gimp-", suffix=".tmp", dir=folder)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if os.name == "posix":
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def check_url(text: str) -> str:
    """A daemon address as typed -> its base URL; ValueError in words when it cannot be one."""
    text = (text or "").strip()
    if not text:
        return ""
    if any(c.isspace() for c in text) or len(text) > MAX_TEXT:
        raise ValueError("the daemon address '{}' is not a URL (e.g. http://127.0.0.1:8765)".format(text[:80]))
    url = normalize_url(text)
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest or rest.startswith((":", "/")):
        raise ValueError("the daemon address '{}' must start with http:// or https:// and name a host, e.g. "
                         "http://127.0.0.1:8765".format(text[:80]))
    return url


def effective_url(argument: str, stored: Settings, env: Optional[Mapping[str, str]] = None) -> str:
    """The address a procedure uses: its argument, else the stored one, else $DRAGGAN_URL, else the default."""
    env = os.environ if env is None else env
    for candidate in (argument, stored.url, env.get(URL_ENV, "")):
        if candidate and candidate.strip():
            return normalize_url(candidate)
    return DEFAULT_URL


def effective_token(argument: str, stored: Settings, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token a procedure sends: its argument, else the stored one, else $DRAGGAN_TOKEN, else none."""
    env = os.environ if env is None else env
    for candidate in (argument, stored.token, env.get(TOKEN_ENV, "")):
        if candidate and candidate.strip():
            return candidate.strip()
    return None
