"""Tokenizer parity: `rwkvx tokenize` against the official package's TRIE_TOKENIZER.

Covers every line of demo-chat.jsonl, generated text in many scripts (emoji ZWJ sequences,
skin tones, flags, combining marks, math, control characters, random code points), random
byte strings (invalid UTF-8 included), and every vocabulary entry (decode(id) is the vocab
bytes; encode(those bytes) is [id]). All cases go through two or three process runs in
--jsonl mode, so the whole file runs in seconds (most of it is the package building its
Python trie).

Env: RWKVX_BIN (build/rwkvx), RWKVX_VOCAB (default <repo>/../shared/data/...),
RWKVX_ORACLE_01 (folder holding rwkv_x 0.1.3; default <repo>/.venv/oracle/0.1),
RWKVX_DEMO_CHAT (default <repo>/../shared/data/demo-chat.jsonl).
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
VOCAB = os.environ.get("RWKVX_VOCAB", os.path.join(SHARED, "rwkv_vocab_v20230424.txt"))
DEMO = os.environ.get("RWKVX_DEMO_CHAT", os.path.join(SHARED, "demo-chat.jsonl"))
ORACLE = os.environ.get("RWKVX_ORACLE_01", os.path.join(REPO, ".venv", "oracle", "0.1"))


@pytest.fixture(scope="module")
def oracle():
    if not os.path.exists(os.path.join(ORACLE, "rwkv_x", "rwkv_tokenizer.py")):
        pytest.fail(f"rwkv_x 0.1.3 not found in {ORACLE} (run scripts/setup.sh or set RWKVX_ORACLE_01)")
    if not os.path.exists(VOCAB):
        pytest.fail(f"vocabulary not found at {VOCAB} (set RWKVX_VOCAB)")
    sys.path.insert(0, ORACLE)
    try:
        from rwkv_x.rwkv_tokenizer import TRIE_TOKENIZER  # pure Python, no torch needed
    finally:
        sys.path.remove(ORACLE)
    return TRIE_TOKENIZER(VOCAB)


def run_tool(rwkvx_bin, args, records):
    """Runs `rwkvx tokenize ARGS --jsonl` on the records (dicts or lists), returns parsed lines."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=True) + "\n")
        p = subprocess.run([rwkvx_bin, "tokenize", *args, "--jsonl", "--in", src, "--out", dst],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        with open(dst, encoding="utf-8") as f:
            out = [json.loads(line) for line in f]
    assert len(out) == len(records)
    return out


SAMPLES = [
    "The quick brown fox jumps over the lazy dog. Ünïcödé façade naïve coöperate",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر",
    "דג סקרן שט בים מאוכזב ולפתע מצא חברה",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "我能吞下玻璃而不伤身体。日本語の文章です、カタカナとひらがな。𠀀𠀁𪚥",
    "다람쥐 헌 쳇바퀴에 타고파. 한국어 문장입니다.",
    "👨‍👩‍👧‍👦 👩🏽‍💻 👍🏻👍🏼👍🏽👍🏾👍🏿 🏳️‍🌈 🏴‍☠️ 🇯🇵🇺🇸🇩🇪🇧🇷 ❤️‍🔥 🧑🏿‍🤝‍🧑🏻 1️⃣ #️⃣",
    "e\u0301 a\u0308\u0323 Z\u0351\u0360\u0361\u035c\u0489 o\u0336\u0337 \u1e9b\u0323 ﷽",
    "∑ᵢ∫₀^∞ √x dx ≠ ≤ ≥ ∀x∃y∈ℝ: x→y ⊗ ⊕ ∂f/∂x 𝔸𝕏𝒵𝓐 ½ ⅞ ∛ ℵ₀",
    "\x00\x01\x02\x07\x08\x0b\x0c\x0e\x1b[31mred\x1b[0m\x1f\x7f\x85\u2028\u2029\ufeff\ufffd\uffff",
    "\t\t\n\n\r\n    " + " " * 300 + "\n" + "-" * 200 + "#" * 100 + "=" * 90,
    "def f(x):\n    return {'a': [1, 2.5e-3, None], \"b\": x ** 2}  # 注释\n",
    "\ue000\U000f0000\U0010fffd \u200b\u200c\u200d\u2060 ​",
    "",
]


def generated_texts(n=400, seed=1234):
    rng = random.Random(seed)
    pieces = [p for s in SAMPLES for p in s.split(" ") if p] + [" ", "\n", "\t", "  ", "\n\n"]
    out = []
    for _ in range(n):
        k = rng.randint(0, 40)
        out.append("".join(rng.choice(pieces) + rng.choice(["", " ", "", "\n"]) for _ in range(k)))
    # Random code points from the whole range (no surrogates: not encodable as UTF-8).
    for _ in range(200):
        cps = []
        for _ in range(rng.randint(1, 60)):
            hi = rng.choice([0x80, 0x800, 0x10000, 0x110000])
            c = rng.randrange(0, hi)
            if 0xD800 <= c <= 0xDFFF:
                c = 0xFFFD
            cps.append(chr(c))
        out.append("".join(cps))
    return out


def random_bytes(n=300, seed=99):
    rng = random.Random(seed)
    out = [bytes([b]) for b in range(256)]
    for _ in range(n):
        mode = rng.randrange(3)
        if mode == 0:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))))
        elif mode == 1:  # UTF-8 text with bytes cut out or flipped
            b = bytearray(rng.choice(SAMPLES).encode("utf-8"))
            for _ in range(rng.randint(1, 4)):
                if b:
                    i = rng.randrange(len(b))
                    if rng.random() < 0.5:
                        del b[i]
                    else:
                        b[i] = rng.randrange(0x80, 0x100)
            out.append(bytes(b))
        else:  # truncated multi-byte sequences and overlongs / surrogates
            out.append(rng.choice([b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xed\xa0\x80",
                                   b"\xf4\x90\x80\x80", b"\xff\xfe"]) * rng.randint(1, 3))
    return out


def test_encode_matches_package_on_demo_chat_and_generated_text(rwkvx_bin, oracle):
    with open(DEMO, encoding="utf-8") as f:
        demo = [json.loads(line)["text"] for line in f if line.strip()]
    assert len(demo) > 100
    texts = demo + SAMPLES + generated_texts()
    got = run_tool(rwkvx_bin, ["--vocab", VOCAB, "--encode"], [{"text": t} for t in texts])
    for i, (t, ids) in enumerate(zip(texts, got)):
        assert ids == oracle.encode(t), f"case {i}: {t[:80]!r}"


def test_encode_matches_package_on_arbitrary_bytes(rwkvx_bin, oracle):
    cases = random_bytes()
    got = run_tool(rwkvx_bin, ["--vocab", VOCAB, "--encode"], [{"hex": b.hex()} for b in cases])
    for b, ids in zip(cases, got):
        assert ids == oracle.encodeBytes(b), b.hex()


def test_every_vocabulary_entry_round_trips(rwkvx_bin, oracle):
    ids = sorted(oracle.idx2token)
    assert ids == list(range(1, 65530))
    # decode(id) is exactly the vocabulary's bytes ...
    dec = run_tool(rwkvx_bin, ["--vocab", VOCAB, "--decode"], [[i] for i in ids])
    for i, d in zip(ids, dec):
        assert bytes.fromhex(d["hex"]) == oracle.idx2token[i], i
    # ... and encoding those bytes gives [id] back, as in the package.
    enc = run_tool(rwkvx_bin, ["--vocab", VOCAB, "--encode"],
                   [{"hex": oracle.idx2token[i].hex()} for i in ids])
    for i, e in zip(ids, enc):
        assert e == [i] == oracle.encodeBytes(oracle.idx2token[i]), i


def test_decode_matches_package_and_streams_valid_utf8(rwkvx_bin, oracle):
    rng = random.Random(5)
    seqs = [oracle.encode(t) for t in SAMPLES + generated_texts(100, seed=7)]
    seqs += [[rng.randrange(1, 65530) for _ in range(rng.randint(0, 30))] for _ in range(300)]
    seqs += [[rng.randrange(1, 257) for _ in range(rng.randint(1, 30))] for _ in range(300)]
    seqs += [[0], [0, 262, 0], [65529, 0, 1]]
    got = run_tool(rwkvx_bin, ["--vocab", VOCAB, "--decode"], seqs)
    for s, g in zip(seqs, got):
        b = oracle.decodeBytes([i for i in s if i != 0])  # 0 (end of text) adds nothing
        assert bytes.fromhex(g["hex"]) == b, s
        text = b.decode("utf-8", errors="replace")
        assert g["text"] == text, s
        assert "".join(g["stream"]) == text, s  # streaming gives the same text
        assert len(g["stream"]) == len(s) + 1
        if "\ufffd" not in text:
            assert oracle.decode([i for i in s if i != 0]) == text


def test_byte_tokenizer(rwkvx_bin):
    cases = random_bytes(50, seed=3)
    got = run_tool(rwkvx_bin, ["--bytes", "--encode"], [{"hex": b.hex()} for b in cases])
    for b, ids in zip(cases, got):
        assert ids == [x + 1 for x in b]
    dec = run_tool(rwkvx_bin, ["--bytes", "--decode"], got + [[0, 257, 66]])
    for b, d in zip(cases, dec):
        assert bytes.fromhex(d["hex"]) == b
    assert dec[-1]["hex"] == "41"


def test_plain_files_round_trip(rwkvx_bin, oracle, tmp_path):
    raw = "\n\n".join(SAMPLES).encode("utf-8") + b"\xff\xe2\x82"
    (tmp_path / "in.bin").write_bytes(raw)
    subprocess.run([rwkvx_bin, "tokenize", "--vocab", VOCAB, "--encode", "--in",
                    str(tmp_path / "in.bin"), "--out", str(tmp_path / "ids.json")], check=True)
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert ids == oracle.encodeBytes(raw)
    subprocess.run([rwkvx_bin, "tokenize", "--vocab", VOCAB, "--decode", "--in",
                    str(tmp_path / "ids.json"), "--out", str(tmp_path / "out.bin")], check=True)
    assert (tmp_path / "out.bin").read_bytes() == raw


def test_bad_input_is_an_error_not_a_crash(rwkvx_bin, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"nope": 1}\n')
    p = subprocess.run([rwkvx_bin, "tokenize", "--vocab", VOCAB, "--encode", "--jsonl", "--in", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "line 2" in p.stderr
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("1 'a' 1\n2 'b' 7\n")
    p = subprocess.run([rwkvx_bin, "tokenize", "--vocab", str(vocab), "--encode", "--in", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "line 2" in p.stderr
    p = subprocess.run([rwkvx_bin, "tokenize", "--encode"], capture_output=True, text=True)
    assert p.returncode == 2
