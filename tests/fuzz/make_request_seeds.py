#!/usr/bin/env python3
"""Regenerates the small seed corpora of the request-level fuzz targets in
tests/fuzz/corpus/ (openai_request_fuzz, proto_request_fuzz, http_request_fuzz,
tokenizer_fuzz, fuzz_snapshot). Needs grpcio-tools (the test venv has it):
    .venv/bin/python tests/fuzz/make_request_seeds.py
The checkpoint corpora come from make_seeds.py (needs torch)."""
import json
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"

COMPLETIONS = [
    {"prompt": "Hello", "max_tokens": 16},
    {"prompt": "x", "max_tokens": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
     "seed": 7, "stop": ["\n", "END"], "n": 2, "stream": True,
     "stream_options": {"include_usage": True}},
    {"prompt": [1, 2, 3, 250], "max_tokens": 2, "logprobs": 3, "echo": False},
    {"prompt": "caf\u00e9 \u2603", "presence_penalty": 1.5, "frequency_penalty": -0.5,
     "ignore_eos": True, "stop_token_ids": [0, 10], "model": "fuzz-model"},
    {"prompt": "", "max_tokens": 0},
    {"prompt": ["a", "b"]},
    {"prompt": "Answer:", "grammar": "root ::= (\"yes\" | \"no\") [0-9]{1,3}", "logit_bias": {"65": 5, "0": -100},
     "min_tokens": 2, "echo": True},
]
CHATS = [
    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"},
                  {"role": "user", "content": [{"type": "text", "text": "and 3+3?"}]}],
     "stream": True, "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 5},
    {"messages": [{"role": "user", "content": "x"}], "stop": "User:", "temperature": 0},
    {"messages": [{"role": "user", "content": "A person"}], "response_format": {"type": "json_schema",
     "json_schema": {"name": "p", "strict": True, "schema": {"type": "object", "properties": {
         "name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 99}},
         "required": ["name", "age"], "additionalProperties": False}}}},
    {"messages": [{"role": "user", "content": "{}"}], "response_format": {"type": "json_object"}},
    {"messages": [{"role": "user", "content": "id?"}], "response_format": {"type": "json_schema", "json_schema": {
        "name": "t", "schema": {"type": "object", "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "tag": {"pattern": "(?:a|b[^\\s\"]){1,3}x*?|\\u00e9.$"}}}}}},
    {"messages": [{"role": "user", "content": "weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "$defs": {"x": {"$ref": "#"}}}}}],
     "tool_choice": "auto"},
]
RESPONSES = [
    {"input": "Hello", "max_output_tokens": 16, "instructions": "Be brief.", "metadata": {"k": "v"}},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo",
                                                                      "annotations": []}]},
               {"role": "user", "content": "more"}], "stream": True, "store": False, "temperature": 0.5},
    {"input": "A person", "text": {"format": {"type": "json_schema", "name": "p", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}},
    {"input": [{"role": "user", "content": "weather?"},
               {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather",
                "arguments": "{\"city\": \"Paris\"}", "status": "completed"},
               {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
     "tools": [{"type": "function", "name": "get_weather", "description": "now", "strict": True,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
     "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": True},
    {"input": [{"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "x"}]}],
     "previous_response_id": "resp_1", "tools": [{"type": "function", "name": "f"}], "tool_choice": "required"},
]


def fresh(name):
    d = CORPUS / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def http_request(path, body):
    b = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer k\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b


def main():
    d = fresh("openai_request_fuzz")
    for i, b in enumerate(COMPLETIONS):
        (d / f"completion_{i}").write_bytes(b"0" + json.dumps(b).encode())
    for i, b in enumerate(CHATS):
        (d / f"chat_{i}").write_bytes(b"1" + json.dumps(b).encode())
    for i, b in enumerate(RESPONSES):
        (d / f"responses_{i}").write_bytes(b"2" + json.dumps(b).encode())

    d = fresh("http_request_fuzz")
    for i, b in enumerate(COMPLETIONS[:3]):
        (d / f"completion_{i}").write_bytes(http_request("/v1/completions", b))
    for i, b in enumerate(CHATS[:2]):
        (d / f"chat_{i}").write_bytes(http_request("/v1/chat/completions", b))
    (d / "get_health").write_bytes(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    b = json.dumps(CHATS[0]).encode()
    (d / "chunked").write_bytes(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
        f"{len(b):x}\r\n".encode() + b + b"\r\n0\r\n\r\n")

    d = fresh("tokenizer_fuzz")
    (d / "encode_ascii").write_bytes(b"\x00Hello, world!")
    (d / "encode_utf8").write_bytes(b"\x00caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 \xc3")
    (d / "literal").write_bytes(b"\x01'a\\x00b\\n'")
    (d / "vocab").write_bytes(b"\x021 'a' 1\n2 b'\\xff' 1\n3 '\\u00e9' 2\n")
    (d / "sampler").write_bytes(b"\x03" + bytes(range(64)))

    d = fresh("fuzz_snapshot")
    (d / "structured_0").write_bytes(bytes([0, 3]) + b"\x00" * 8)
    (d / "structured_1").write_bytes(bytes([0, 7, 16, 0, 0, 0, 255]))
    (d / "raw").write_bytes(bytes([1]) + b"RWKVXSNP" + b"\x00" * 32)

    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp()
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}",
                    "rwkvx/v1/inference.proto"]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    from rwkvx.v1 import inference_pb2 as pb
    d = fresh("proto_request_fuzz")
    reqs = [
        pb.GenerateRequest(text="Hello", max_tokens=16),
        pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 2, 300]), max_tokens=3,
                           sampling=pb.SamplingParams(temperature=0.5, top_p=0.9, top_k=5,
                                                      seed=3, presence_penalty=1.0,
                                                      frequency_penalty=-1.0),
                           stop=["\n"], stop_token_ids=[0], top_logprobs=2, logprobs=True),
        pb.GenerateRequest(text="x", session_id="s1", ignore_eos=True, model="fuzz-model"),
        pb.GenerateRequest(text="", max_tokens=-1),
        pb.GenerateRequest(text="{", json_schema='{"type": "object", "properties": {"a": {"enum": [1, 2]}}}',
                           logit_bias={65: 3.0, 0: -100.0}, min_tokens=1),
        pb.GenerateRequest(text="?", grammar='root ::= "yes" | "no"'),
        pb.GenerateRequest(text="{", json_object=True),
    ]
    for i, r in enumerate(reqs):
        for flag in (0, 1):
            (d / f"req_{i}_{flag}").write_bytes(bytes([flag]) + r.SerializeToString())
    for name in sorted(os.listdir(CORPUS)):
        print(name, len(os.listdir(CORPUS / name)))


if __name__ == "__main__":
    main()
