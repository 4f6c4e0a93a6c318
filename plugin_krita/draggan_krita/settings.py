"""The plug-in's settings (daemon URL, token, model, seed, drag parameters), without Krita.

`Settings.load(store)` / `save(store)` work with any object that has get(key, default) and
set(key, value); in Krita that is kritarc (kritadoc.KritaSettingsStore). The environment variables
DRAGGAN_URL and DRAGGAN_TOKEN override the stored values (handy for tests and remote daemons).
"""
import json
import os

from .draggan_client.client import DEFAULT_URL, normalize_url
from .jobspec import clean_params


class Settings(object):
    def __init__(self):
        self.url = DEFAULT_URL
        self.token = ""
        self.model = ""
        self.seed = 0
        self.params = clean_params({})

    def to_dict(self):
        return {"url": self.url, "token": self.token, "model": self.model, "seed": self.seed,
                "params": dict(self.params)}

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
