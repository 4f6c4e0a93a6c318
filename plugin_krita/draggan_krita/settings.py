"""The plug-in's settings (daemon URL, token, model, seed, drag parameters, how the local daemon is
started), without Krita.

`Settings.load(store)` / `save(store)` work with any object that has get(key, default) and
set(key, value); in Krita that is kritarc (kritadoc.KritaSettingsStore). The environment variables
DRAGGAN_URL and DRAGGAN_TOKEN override the stored values (handy for tests and remote daemons).
"""
import json
import os

from .draggan_client.client import DEFAULT_URL, normalize_url
from .draggan_client.launcher import DaemonSettings
from .jobspec import clean_params

# the settings of the local daemon (the launcher's DaemonSettings) under the names kritarc keeps them by
LOCAL_FIELDS = (("daemon_command", "command"), ("project_dir", "project_dir"), ("extra_args", "extra_args"),
                ("keep_running", "keep_running"), ("start_with_krita", "start_with_editor"))


class Settings(object):
    def __init__(self):
        self.url = DEFAULT_URL
        self.token = ""
        self.model = ""
        self.seed = 0
        self.params = clean_params({})
        local = DaemonSettings()
        for mine, theirs in LOCAL_FIELDS:
            setattr(self, mine, getattr(local, theirs))

    def to_dict(self):
        data = {"url": self.url, "token": self.token, "model": self.model, "seed": self.seed,
                "params": dict(self.params)}
        data.update((mine, getattr(self, mine)) for mine, _theirs in LOCAL_FIELDS)
        return data

    def daemon_settings(self):
        """How the launcher starts the local daemon (draggan_client.launcher.start_local)."""
        return DaemonSettings(**{theirs: getattr(self, mine) for mine, theirs in LOCAL_FIELDS})

    def quit_action(self, running, kept):
        """What to do with the local daemon when Krita quits: "detach" (keep it: the artist asked, and it was
        started to outlive Krita), "stop", or None (none runs). A daemon started before "keep running" was
        ticked is tied to Krita's process and cannot be kept, so it is stopped."""
        if not running:
            return None
        return "detach" if self.keep_running and kept else "stop"

    def update(self, data):
        data = data or {}
        if "url" in data:
            self.url = normalize_url(data["url"])
        if "token" in data:
            self.token = (data["token"] or "").strip()
        if "model" in data:
            self.model = data["model"] or ""
        if "seed" in data:
            try:
                self.seed = max(0, min(int(data["seed"]), 2 ** 32 - 1))
            except (TypeError, ValueError):
                pass
        if "params" in data:
            try:
                self.params = clean_params(data["params"])
            except (TypeError, ValueError):
                self.params = clean_params({})
        for key in ("daemon_command", "project_dir", "extra_args"):
            if key in data:
                setattr(self, key, str(data[key] or "").strip())
        for key in ("keep_running", "start_with_krita"):
            if key in data:
                setattr(self, key, data[key] is True)
        return self

    def apply_env(self, environ=None):
        env = os.environ if environ is None else environ
        if env.get("DRAGGAN_URL"):
            self.url = normalize_url(env["DRAGGAN_URL"])
        if env.get("DRAGGAN_TOKEN"):
            self.token = env["DRAGGAN_TOKEN"].strip()
        return self

    @classmethod
    def load(cls, store, environ=None):
        s = cls()
        try:
            raw = store.get("settings", "")
            if raw:
                s.update(json.loads(raw))
        except (ValueError, TypeError):
            pass
        return s.apply_env(environ)

    def save(self, store):
        store.set("settings", json.dumps(self.to_dict()))
