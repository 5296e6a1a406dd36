"""Serving a checkpoint file with the world tokenizer (--model + --vocab): a random
checkpoint in the official .pth layout, written by tests/parity/oracle.py."""
import json
import os
import subprocess
import sys

import grpc
import openai
import pytest
import requests

from e2e_util import ROOT

VOCAB = os.environ.get("RWKVX_VOCAB", str(ROOT.parent / "shared" / "data" / "rwkv_vocab_v20230424.txt"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    if not os.path.exists(VOCAB):
        pytest.skip(f"no world vocabulary at {VOCAB}")
    out = tmp_path_factory.mktemp("ckpt") / "tiny-rwkvx.pth"
    shape = {"vocab": 65536, "n_embd": 64, "n_rwkv_layer": 2, "n_attn_layer": 1, "ffn_dim": 256,
             "rank_w": 8, "rank_a": 8, "rank_v": 4, "rank_g": 16}
    subprocess.run([sys.executable, str(ROOT / "tests" / "parity" / "oracle.py"), "make",
                    "--out", str(out), "--shape", json.dumps(shape), "--seed", "5"],
                   check=True, timeout=300)
    return str(out)


def test_serves_checkpoint_with_world_tokenizer(make_server, checkpoint, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--model", checkpoint, "--vocab", VOCAB, "--model-name", "tiny")
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="x", max_retries=0)
    m = client.models.list().data[0]
    assert m.id == "tiny"
    text = "Hello world, 你好"
    ch = grpc.insecure_channel(srv.grpc_target)
    stub = pbg.InferenceStub(ch)
    ids = list(stub.Tokenize(pb.TokenizeRequest(text=text), timeout=10).token_ids)
    assert len(ids) < len(text.encode())  # the world tokenizer merges bytes
    assert stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=10).text == text
    assert stub.ListModels(pb.ListModelsRequest(), timeout=10).models[0].tokenizer == "world"
    ch.close()
    # HTTP /tokenize and /detokenize (vLLM's form) give the same ids and text.
    j = requests.post(srv.base + "/tokenize", json={"prompt": text, "return_token_strs": True}, timeout=10).json()
    assert j["tokens"] == ids and j["count"] == len(ids) and len(j["token_strs"]) == len(ids)
    assert requests.post(srv.base + "/detokenize", json={"tokens": ids}, timeout=10).json() == {"prompt": text}
    r = client.completions.create(model="tiny", prompt=text, max_tokens=5, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == 5
    c = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, temperature=0)
    assert c.choices[0].finish_reason in ("stop", "length")
