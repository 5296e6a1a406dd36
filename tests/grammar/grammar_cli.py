"""Helpers for the grammar tests: run `rwkvx grammar` (tools/grammar.cc) on a batch of
JSON requests, read the world vocabulary, serialize JSON the way the strict grammar
writes it (compact, integral floats as integers, keys in schema order)."""
import ast
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rwkvx_bin():
    return os.environ.get("RWKVX_BIN", os.path.join(ROOT, "build", "rwkvx"))


def vocab_path():
    return os.environ.get("RWKVX_VOCAB", os.path.join(ROOT, "..", "shared", "data", "rwkv_vocab_v20230424.txt"))


def run_cli(requests, vocab=False, timeout=600):
    """One `rwkvx grammar` process for a list of request dicts; returns the answers."""
    args = [rwkvx_bin(), "grammar"]
    if vocab:
        args += ["--vocab", vocab_path()]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    out = subprocess.run(args, input=text.encode(), capture_output=True, timeout=timeout, check=True)
    answers = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    assert len(answers) == len(requests), out.stderr.decode()
    return answers


def read_world_vocab():
    """Token bytes by id (index 0, the end of text, is b"")."""
    tokens = {}
    with open(vocab_path(), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            i, j = line.index(" "), line.rindex(" ")
            x = ast.literal_eval(line[i:j])
            tokens[int(line[:i])] = x.encode() if isinstance(x, str) else x
    size = max(tokens) + 1
    return [tokens.get(k, b"") for k in range(size)]


def mask_ids(hex_words):
    """Allowed token ids from the CLI's mask (little-endian uint32 words in hex)."""
    data = bytes.fromhex(hex_words)
    ids = []
    for byte_index, b in enumerate(data):
        for bit in range(8):
            if b >> bit & 1:
                ids.append(byte_index * 8 + bit)
    return ids


def number_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return json.dumps(v)


def compact(v):
    """Compact JSON in the instance's own key order."""
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + compact(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(compact(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    return number_text(v)
