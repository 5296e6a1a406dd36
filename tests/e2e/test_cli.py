"""`rwkvx serve` flags: --help documents them, bad flags fail clearly, backend choice is logged."""
import os
import shutil
import socket
import subprocess

import pytest

import openai

from e2e_util import binary


def run(*args, env=None):
    return subprocess.run([binary(), "serve", *args], capture_output=True, timeout=60,
                          env=None if env is None else {**os.environ, **env})


def test_help_documents_flags():
    r = run("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for flag in ["--model", "--vocab", "--tokenizer", "--backend", "--host", "--http-port",
                 "--grpc-port", "--api-key", "--max-sessions", "--max-queue",
                 "--max-prompt-tokens", "--max-tokens", "--max-batch-tokens",
                 "--request-timeout", "--attn-chunk-size", "--attn-topk", "--kv-max",
                 "--drain-grace", "--sampling", "--stream-writer", "--cuda-wkv-chunked-min",
                 "--cuda-free-state-blocks", "--overlap-steps", "--weights"]:
        assert flag + " " in out, flag
    batch = out[out.index("--max-batch-tokens"):out.index("--prefill-chunk ")]
    assert "0 = auto" in batch and "4096" in batch and "512" in batch


def test_help_documents_the_limits_that_follow_the_model():
    out = run("--help").stdout.decode()
    prompt = out[out.index("--max-prompt-tokens"):out.index("--max-tokens ")]
    assert "131072" in prompt and "ctx_len" in prompt
    body = out[out.index("--max-body-bytes"):out.index("--max-header-bytes")]
    assert "1 MiB" in body and "--max-snapshot-bytes" in body
    r = run("--max-prompt-tokens", "-1")
    assert r.returncode != 0 and b"--max-prompt-tokens" in r.stderr


def test_bad_flags_fail():
    assert run("--no-such-flag", "1").returncode != 0
    assert run("--max-sessions", "zero").returncode != 0
    assert run("--backend", "tpu").returncode != 0
    r = run("--sampling", "gpu")
    assert r.returncode != 0 and b"--sampling" in r.stderr
    r = run("--stream-writer", "maybe")
    assert r.returncode != 0 and b"--stream-writer" in r.stderr
    r = run("--max-batch-tokens", "-1")
    assert r.returncode != 0 and b"--max-batch-tokens" in r.stderr
    r = run("--cuda-wkv-chunked-min", "-1")
    assert r.returncode != 0 and b"--cuda-wkv-chunked-min" in r.stderr
    r = run("--cuda-free-state-blocks", "-2")
    assert r.returncode != 0 and b"--cuda-free-state-blocks" in r.stderr
    r = run("--overlap-steps", "2")
    assert r.returncode != 0 and b"--overlap-steps" in r.stderr
    for flag in ("--cuda-skinny-mma", "--cuda-graph-buckets", "--cuda-split-mixed", "--cuda-batch-invariant"):
        r = run(flag, "2")
        assert r.returncode != 0 and f"{flag}: 0 or 1".encode() in r.stderr


def test_step_size_follows_the_backend_and_is_logged(make_server):
    # --max-batch-tokens auto: the CPU backend's 512 (CUDA's 4096 needs a GPU); a given value
    # is used as given. The start-up log says which and why.
    srv = make_server("--backend", "cpu")
    assert "step size: 512 tokens (--max-batch-tokens auto: CPU backend" in srv.log_text()
    srv = make_server("--backend", "cpu", "--max-batch-tokens", "96")
    assert "step size: 96 tokens (--max-batch-tokens)" in srv.log_text()
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="x" * 300, max_tokens=4)  # prompt > one step
    assert r.usage.completion_tokens == 4


def seeded_stream_text(srv):
    # The text of one seeded, streamed completion (24 tokens, end of text ignored).
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    stream = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24,
                                       temperature=0.9, seed=5, stream=True,
                                       extra_body={"ignore_eos": True})
    return "".join(c.choices[0].text for c in stream if c.choices)


def test_stream_writer_off_streams_the_same_text(make_server):
    # --stream-writer off: the scheduler's loop decodes and pushes every stream itself; the
    # log says which is in force, and a seeded stream reads the same as with the writer on.
    texts = []
    for mode in ("on", "off"):
        srv = make_server("--backend", "cpu", "--stream-writer", mode)
        assert f"stream writer: {mode} (" in srv.log_text()
        texts.append(seeded_stream_text(srv))
    assert texts[0] and texts[0] == texts[1]


def test_overlap_steps_off_streams_the_same_text(make_server):
    # --overlap-steps 0: every step is waited for as soon as it is launched (the default, 1,
    # takes its results after the loop's other host work); the log says which, and a seeded
    # stream reads the same either way.
    texts = []
    for mode, word in (("1", "on"), ("0", "off")):
        srv = make_server("--backend", "cpu", "--overlap-steps", mode)
        assert f"overlap steps: {word}" in srv.log_text()
        texts.append(seeded_stream_text(srv))
    assert texts[0] and texts[0] == texts[1]


def test_device_sampling_on_the_cpu_backend_samples_on_the_host(make_server):
    # The CPU reference returns logits: --sampling device falls back to the host sampler,
    # says so, and generates as usual.
    srv = make_server("--backend", "cpu", "--sampling", "device")
    assert "sampling: host (the backend returns logits)" in srv.log_text()
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="Hello", max_tokens=4, temperature=0.8,
                                  seed=3, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 4


def test_sampling_auto_is_the_default_and_is_host_on_the_cpu_backend(make_server):
    # --sampling auto (the default): device sampling where the backend has it (CUDA), so the
    # CPU reference samples on the host; the log says which is in force.
    srv = make_server("--backend", "cpu")
    assert "sampling: host (the backend returns logits) [--sampling auto]" in srv.log_text()


@pytest.mark.parametrize("fmt", ["fp8", "int8"])
def test_weights_8bit_is_a_cuda_option(make_server, fmt):
    # --weights fp8 / int8 (8-bit projections; docs/CUDA.md): the CPU backend refuses them by
    # name; with --backend auto the CUDA backend takes them where a GPU is usable, else the CPU
    # serves the exact fp32 model and the log says that the choice did not apply. Either way
    # it serves.
    r = run("--backend", "cpu", "--weights", fmt)
    assert r.returncode != 0 and f"--weights {fmt} is a CUDA option".encode() in r.stderr
    r = run("--weights", "fp4")
    assert r.returncode != 0 and b"--weights: fp32, fp16, bf16, fp8 or int8" in r.stderr
    srv = make_server("--weights", fmt)
    log = srv.log_text()
    if "backend: cuda" in log:
        assert f"weights {fmt}, experimental" in log
    else:
        assert f"--weights {fmt} applies to the CUDA backend only: the CPU backend runs fp32" in log
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="Hello", max_tokens=4,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 4


def test_flags_from_the_environment(make_server, monkeypatch):
    # RWKVX_FLAG_<FLAG> sets a flag (what a container's environment does); the command line
    # wins; the log names the flags taken from the environment, never their values.
    monkeypatch.setenv("RWKVX_FLAG_MAX_TOKENS", "300")
    monkeypatch.setenv("RWKVX_FLAG_MAX_BATCH_TOKENS", "64")
    monkeypatch.setenv("RWKVX_FLAG_API_KEY", "rk-env-secret")
    srv = make_server("--backend", "cpu", "--max-batch-tokens", "96")
    log = srv.log_text()
    line = next(l for l in log.splitlines() if "flags from the environment (RWKVX_FLAG_*)" in l)
    for flag in ("--max-tokens", "--max-batch-tokens", "--api-key"):
        assert flag in line
    assert "rk-env-secret" not in log
    assert "max_tokens <= 300" in log
    assert "step size: 96 tokens (--max-batch-tokens)" in log  # the command line wins
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="rk-env-secret", max_retries=0)
    model = client.models.list().data[0].id
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="x", max_tokens=301)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=srv.base + "/v1", api_key="wrong", max_retries=0).models.list()
    # A variable that names no flag, and a bad value, fail at start naming the variable.
    r = run("--backend", "cpu", env={"RWKVX_FLAG_MAX_TOKEN": "5"})
    assert r.returncode != 0 and b"unknown environment variable RWKVX_FLAG_MAX_TOKEN" in r.stderr
    r = run("--backend", "cpu", env={"RWKVX_FLAG_MAX_SESSIONS": "many"})
    assert r.returncode != 0 and b"RWKVX_FLAG_MAX_SESSIONS (--max-sessions): bad value 'many'" in r.stderr
    assert b"RWKVX_FLAG_" in run("--help").stdout


def test_backend_cuda_without_gpu_fails_clearly():
    if os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi"):
        # With a GPU the server starts and serves: nothing to refuse.
        pytest.skip("a GPU is usable here; this checks machines without one")
    r = run("--backend", "cuda", "--http-port", "0", "--grpc-port", "-1")
    assert r.returncode != 0
    assert b"CUDA" in r.stderr


def test_auto_backend_is_logged(server):
    log = server.log_text()
    assert "backend: " in log
    assert "serving the embedded trained demo model" in log  # the default (server/embedded/)


def test_expect_100_continue(server):
    body = b'{"prompt": "' + b"a" * 2000 + b'", "max_tokens": 2}'
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
