"""Fixtures for end-to-end tests of the real `rwkvx serve` binary.

The binary comes from env RWKVX_BIN (default: build/rwkvx). Ports are picked by the
server (--http-port 0 --grpc-port 0) and read back from --port-file. No sleeps as
synchronisation: every wait polls a condition under a bounded deadline (e2e_util.py).
"""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import ROOT, Server  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(server):
    """The `openai` package against the module's server (no retries); a test module may
    define its own `client`."""
    import openai
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def make_server():
    made = []

    def make(*args):
        s = Server(*args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture(scope="session")
def grpc_stubs(tmp_path_factory):
    """Generates the Python stubs from proto/ with grpcio-tools at test time."""
    from grpc_tools import protoc
    import grpc_tools
    out = tmp_path_factory.mktemp("stubs")
    proto_dir = ROOT / "proto"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(proto_dir)) for p in (proto_dir / "rwkvx" / "v1").glob("*.proto")]
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *files])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from rwkvx.v1 import inference_pb2, inference_pb2_grpc
    return inference_pb2, inference_pb2_grpc
