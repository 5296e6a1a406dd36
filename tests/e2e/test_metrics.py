"""/metrics: `promtool check metrics` accepts it, and a real Prometheus scrapes it."""
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
import requests

from e2e_util import wait_for

EXPECTED = [
    "rwkvx_time_to_first_token_seconds", "rwkvx_inter_token_latency_seconds",
    "rwkvx_request_duration_seconds", "rwkvx_queue_time_seconds",
    "rwkvx_step_duration_seconds", "rwkvx_step_batch_sessions", "rwkvx_step_batch_tokens",
    "rwkvx_requests_running", "rwkvx_requests_waiting", "rwkvx_sessions_active",
    "rwkvx_session_state_bytes", "rwkvx_sparse_kv_tokens", "rwkvx_backend_device_bytes", "rwkvx_backend_graphs", "rwkvx_scheduler_seconds_total", "rwkvx_steps_by_kind_total", "rwkvx_step_seconds_total", "rwkvx_prompt_tokens_total",
    "rwkvx_generation_tokens_total", "rwkvx_requests_finished_total",
]


def test_metrics_names_and_promtool(server):
    requests.post(server.base + "/v1/completions", json={"prompt": "warm", "max_tokens": 4},
                  timeout=60)
    text = requests.get(server.base + "/metrics", timeout=10).text
    for name in EXPECTED:
        assert f"# TYPE {name} " in text, name
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed")
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_scrapes_the_server(server):
    prom = shutil.which("prometheus")
    if not prom:
        pytest.skip("prometheus not installed")
    with tempfile.TemporaryDirectory(prefix="rwkvx-prom-") as d:
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: rwkvx
    static_configs:
      - targets: ["127.0.0.1:{server.http_port}"]
""")
        port = free_port()
        log = open(os.path.join(d, "prom.log"), "wb")
        p = subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={d}/data",
                              f"--web.listen-address=127.0.0.1:{port}"],
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            api = f"http://127.0.0.1:{port}/api/v1"

            def target_up():
                try:
                    t = requests.get(api + "/targets", timeout=5).json()
                except (requests.RequestException, ValueError):
                    return False
                act = t.get("data", {}).get("activeTargets", [])
                return any(a.get("health") == "up" for a in act)

            wait_for(target_up, "Prometheus to scrape the server", timeout=120, interval=0.25)

            def has_series():
                q = requests.get(api + "/query", params={"query": "rwkvx_generation_tokens_total"},
                                 timeout=5).json()
                return q["status"] == "success" and q["data"]["result"]

            res = wait_for(has_series, "a scraped rwkvx series", timeout=60, interval=0.25)
            assert float(res[0]["value"][1]) >= 0
        finally:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()
