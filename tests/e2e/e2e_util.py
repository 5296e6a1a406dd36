"""Helpers for the end-to-end tests: start the real server, poll with deadlines."""
import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEADLINE_S = float(os.environ.get("RWKVX_E2E_DEADLINE", "60"))


def binary():
    b = os.environ.get("RWKVX_BIN", str(ROOT / "build" / "rwkvx"))
    if not os.path.exists(b):
        pytest.skip(f"server binary not found: {b} (set RWKVX_BIN)")
    return b


def model_id(client):
    """The served model's id, through an `openai` client."""
    return client.models.list().data[0].id


def wait_for(cond, what, timeout=DEADLINE_S, interval=0.02):
    """Polls cond() until truthy; fails the test after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Server:
    def __init__(self, *extra_args):
        self.dir = tempfile.TemporaryDirectory(prefix="rwkvx-e2e-")
        self.port_file = os.path.join(self.dir.name, "ports.json")
        self.log_path = os.path.join(self.dir.name, "server.log")
        self.log = open(self.log_path, "wb")
        # RWKVX_E2E_SERVER_ARGS: flags for every server of the run (before the test's own),
        # e.g. the sanitizer stage's "--stream-writer on" on a 2-core machine where auto is off.
        common = os.environ.get("RWKVX_E2E_SERVER_ARGS", "").split()
        args = [binary(), "serve", "--http-port", "0", "--grpc-port", "0",
                "--port-file", self.port_file, *common, *extra_args]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        ports = wait_for(self._ports, "the server's port file")
        self.http_port = ports["http_port"]
        self.grpc_port = ports["grpc_port"]
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def _ports(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.log_text()}")
        try:
            with open(self.port_file) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def metrics(self):
        """Parses /metrics into {name{labels}: value}."""
        out = {}
        for line in requests.get(self.base + "/metrics", timeout=10).text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            out[key] = float(val)
        return out

    def metric(self, key):
        return self.metrics().get(key, 0.0)

    def alive(self):
        return self.proc.poll() is None

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode

    def close(self):
        self.terminate()
        log = self.log_text()
        self.dir.cleanup()
        # With a sanitizer build (RWKVX_BIN built with -DRWKVX_SANITIZE=...), any report fails.
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer"):
            assert marker not in log, f"sanitizer report in the server log:\n{log[-4000:]}"


