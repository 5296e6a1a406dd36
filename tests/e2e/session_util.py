"""Helpers shared by the named-session e2e tests (test_sessions.py, test_session_dir.py)."""
import pytest  # noqa: F401
import requests


SEED = ["--embedded-seed", "7"]
GREEDY = {"temperature": 0.0, "logprobs": 5, "ignore_eos": True}


def ids(text):
    return [b + 1 for b in text.encode()]  # the bytes tokenizer


class Http:
    def __init__(self, server):
        self.base = server.base + "/v1/sessions"
        self.s = requests.Session()

    def create(self, sid=None, prompt=None, ok=True):
        body = {}
        if sid is not None:
            body["session_id"] = sid
        if prompt is not None:
            body["prompt"] = prompt
        r = self.s.post(self.base, json=body, timeout=30)
        if ok:
            assert r.status_code == 200, r.text
            return r.json()
        return r

    def get(self, sid):
        return self.s.get(f"{self.base}/{sid}", timeout=30)

    def append(self, sid, prompt):
        return self.s.post(f"{self.base}/{sid}/append", json={"prompt": prompt}, timeout=30)

    def complete(self, sid, prompt, n=6):
        r = self.s.post(f"{self.base}/{sid}/completions",
                        json={"prompt": prompt, "max_tokens": n, **GREEDY}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["logprobs"]

    def fork(self, sid, new):
        return self.s.post(f"{self.base}/{sid}/fork", json={"session_id": new}, timeout=30)

    def snapshot(self, sid):
        return self.s.get(f"{self.base}/{sid}/snapshot", timeout=60)

    def restore(self, sid, data):
        return self.s.put(f"{self.base}/{sid}/snapshot", data=data,
                          headers={"Content-Type": "application/octet-stream"}, timeout=60)

    def delete(self, sid):
        return self.s.delete(f"{self.base}/{sid}", timeout=30)

    def list(self):
        return {s["id"]: s for s in self.s.get(self.base, timeout=30).json()["data"]}


def reference(api, name, calls):
    """A session that is never interrupted: create(prompt), then one completion per call."""
    api.create(name, prompt=calls[0])
    out = [api.complete(name, c) for c in calls[1:]]
    api.delete(name)
    return out
