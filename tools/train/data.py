"""Training data for the demo model, byte-level (token id = byte + 1; 0 = end of text).

- English text: ../shared/data/demo-chat.jsonl (the "text" field of each line) and the
  King James Bible from Debian's bible-kjv packages (prepare_data.sh writes kjv.txt).
- The passkey task of the RWKV-X paper: a 5-digit key at a random depth in repeated
  filler, asked for at the end. `passkey_prompt` is also what the evaluation uses.
"""
import json
import os
import random

import numpy as np

PREFIX = ("There is an important info hidden inside a lot of irrelevant text. "
          "Find it and memorize it. I will quiz you about the important information there.\n\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\n\nWhat is the pass key? The pass key is"
ANSWER = " {key}."


def passkey_prompt(n_bytes, depth, key):
    """A prompt of exactly n_bytes bytes with the needle at fractional depth (0..1) of the
    filler (at a sentence boundary of the filler), ending with QUESTION. The model should
    continue with ANSWER."""
    needle = NEEDLE.format(key=key)
    room = n_bytes - len(PREFIX) - len(needle) - len(QUESTION)
    if room < 0:
        raise ValueError(f"{n_bytes} bytes is too short for a passkey prompt")
    reps = room // len(FILLER) + 2
    stream = FILLER * reps
    before = int(round(depth * room))
    # Snap to the end of a filler sentence (". ") at or before `before`.
    cut = stream.rfind(". ", 0, before + 1)
    before = cut + 2 if cut >= 0 and before > 0 else 0
    after = room - before
    start = before % len(FILLER)
    text = PREFIX + stream[:before] + needle + stream[start:start + after] + QUESTION
    assert len(text) == n_bytes, (len(text), n_bytes)
    return text


def encode(text):
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + 1


class TextCorpus:
    """Random windows of English text (bytes), from a few sources sampled by weight."""

    def __init__(self, data_dir, demo_chat):
        self.sources = []
        if demo_chat and os.path.exists(demo_chat):
            texts = [json.loads(line)["text"] for line in open(demo_chat, encoding="utf-8") if line.strip()]
            self.sources.append((0.6, encode("\n\n".join(texts) + "\n\n")))
        kjv = os.path.join(data_dir, "kjv.txt") if data_dir else None
        if kjv and os.path.exists(kjv):
            self.sources.append((0.4, encode(open(kjv, encoding="utf-8").read())))
        if not self.sources:
            raise FileNotFoundError("no training text: give --demo-chat and/or run prepare_data.sh")
        tot = sum(w for w, _ in self.sources)
        self.weights = [w / tot for w, _ in self.sources]

    def sample(self, rng, n):
        src = self.sources[rng.choices(range(len(self.sources)), self.weights)[0]][1]
        if len(src) <= n:
            src = np.tile(src, n // len(src) + 2)
        i = rng.randrange(0, len(src) - n)
        return src[i:i + n]


def passkey_sample(rng, n):
    """n + 1 token ids (inputs = [:n], targets = [1:]), the answer query positions (the 5
    input positions whose targets are the key's digits) and, for each, the positions of
    that digit in the needle's two copies of the key [5, 2]."""
    key = rng.randrange(10000, 100000)
    ans = ANSWER.format(key=key) + "\n"
    prompt = passkey_prompt(n + 1 - len(ans), rng.random(), key)
    ids = encode(prompt + ans)
    p = len(prompt)  # input position of the space before the digits
    k1 = prompt.find(NEEDLE.format(key=key)) + NEEDLE.index("{key}")
    k2 = k1 + len(NEEDLE.format(key=key).split(" Remember it. ")[0]) + len(" Remember it. ") - NEEDLE.index("{key}")
    assert prompt[k1:k1 + 5] == str(key) and prompt[k2:k2 + 5] == str(key)
    return ids, list(range(p, p + 5)), [[k1 + i, k2 + i] for i in range(5)]


def make_batch(rng, corpus, kind, n, b):
    """kind: 'text' or 'passkey'. Returns (ids [b, n+1] int64, ans [b, 5] or None,
    keypos [b, 5, 2] or None)."""
    if kind == "text":
        return np.stack([corpus.sample(rng, n + 1) for _ in range(b)]), None, None
    rows, ans, kp = zip(*(passkey_sample(rng, n) for _ in range(b)))
    return np.stack(rows), np.array(ans, dtype=np.int64), np.array(kp, dtype=np.int64)


if __name__ == "__main__":
    r = random.Random(0)
    print(passkey_prompt(600, 0.5, 12345))
    ids, a, kp = passkey_sample(r, 1024)
    print(len(ids), a, kp, bytes((ids[a[0]:a[0] + 7] - 1).tolist()))
