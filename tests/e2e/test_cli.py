"""`rwkvx serve` flags: --help documents them, bad flags fail clearly, backend choice is logged."""
import socket
import subprocess

from e2e_util import binary


def run(*args):
    return subprocess.run([binary(), "serve", *args], capture_output=True, timeout=60)


def test_help_documents_flags():
    r = run("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for flag in ["--model", "--vocab", "--tokenizer", "--backend", "--host", "--http-port",
                 "--grpc-port", "--api-key", "--max-sessions", "--max-queue",
                 "--max-prompt-tokens", "--max-tokens", "--max-batch-tokens",
                 "--request-timeout", "--attn-chunk-size", "--attn-topk", "--kv-max",
                 "--drain-grace"]:
        assert flag + " " in out, flag


def test_bad_flags_fail():
    assert run("--no-such-flag", "1").returncode != 0
    assert run("--max-sessions", "zero").returncode != 0
    assert run("--backend", "tpu").returncode != 0


def test_backend_cuda_without_gpu_fails_clearly():
    r = run("--backend", "cuda", "--http-port", "0", "--grpc-port", "-1")
    if r.returncode == 0:
        return  # a GPU is usable here
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
