"""The prefix state cache (docs/PREFIX_CACHE.md) through the openai client: a server with
the cache gives exactly the tokens and log-probabilities of one without it (multi-turn
chat, completions sharing a prefix, below and past the full-attention threshold), and
/metrics shows the hits and the prompt tokens it did not prefill."""
import subprocess

import openai
import pytest
import requests
from e2e_util import binary

HITS = "rwkvx_prefix_cache_hits_total"
MISSES = "rwkvx_prefix_cache_misses_total"
SAVED = "rwkvx_prefix_cache_saved_tokens_total"
PROMPT = "rwkvx_prompt_tokens_total"
ENTRIES = "rwkvx_prefix_cache_entries"
BYTES = "rwkvx_prefix_cache_bytes"


GRID = 128  # --prefill-chunk's default


INVARIANT = ("--cuda-batch-invariant", "1")


def on_gpu(srv, flags=()):
    """The CUDA backend's default kernels are not split-invariant (the GEMM kernels and the
    wkv kernel change with how a prompt is cut), so its cache serves only checkpoints on the
    prefill grid (multiples of --prefill-chunk; docs/PREFIX_CACHE.md): a hit off the grid
    would change the numbers. The tests state that there rather than the CPU's finer hits.
    With --cuda-batch-invariant 1 the CUDA backend is split-invariant and hits like the CPU."""
    if tuple(flags[-2:]) == INVARIANT:
        return False
    return requests.get(srv.base + "/v1/models", timeout=30).json()["data"][0]["backend"] != "cpu"


def client(srv):
    return openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)


def model_id(c):
    return c.models.list().data[0].id


@pytest.fixture
def pair(make_server):
    """(cold, warm): the same flags, the prefix cache off and on."""
    def make(*flags):
        cold = make_server("--prefix-cache-bytes", "0", *flags)
        warm = make_server("--prefix-cache-bytes", str(1 << 30), "--prefix-cache-min-tokens", "4",
                           *flags)
        return cold, warm
    return make


def chat_turn(c, messages, seed):
    r = c.chat.completions.create(model=model_id(c), messages=messages, max_tokens=24,
                                  temperature=1.0, seed=seed, logprobs=True, top_logprobs=3)
    ch = r.choices[0]
    lps = [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs])
           for t in ch.logprobs.content]
    return ch.message.content, lps, r.usage.prompt_tokens


# The second set: on the CPU the same run (a CUDA flag); on a GPU, the batch-invariant
# kernels, whose cache hits at any token like the CPU's.
MODES = pytest.mark.parametrize("mode", [(), INVARIANT], ids=["default", "batch-invariant"])


@MODES
def test_multi_turn_chat_matches_a_server_without_the_cache(pair, mode):
    cold, warm = pair(*mode)
    cc, wc = client(cold), client(warm)
    messages = [{"role": "system", "content": "You are a terse assistant."}]
    prompt_lens = []
    for turn in range(6):
        messages.append({"role": "user", "content": f"Question number {turn}: what next?"})
        want = chat_turn(cc, messages, seed=100 + turn)
        got = chat_turn(wc, messages, seed=100 + turn)
        assert got == want, f"turn {turn}"
        prompt_lens.append(want[2])
        messages.append({"role": "assistant", "content": want[0]})
    assert cold.metric(HITS) == 0 and cold.metric(SAVED) == 0
    assert warm.metric(MISSES) >= 1  # the first turn
    if on_gpu(warm, mode):
        # Grid checkpoints only: each hit saves whole multiples of the grid, and every
        # turn whose previous prompt crossed a grid point hits.
        assert warm.metric(SAVED) % GRID == 0
        assert warm.metric(HITS) >= sum(n >= GRID for n in prompt_lens[:-1])
    else:
        # Turn N's prompt is a prefix of turn N+1's (chat template, byte tokenizer), so
        # every turn after the first starts at least from the previous prompt's checkpoint.
        assert warm.metric(HITS) >= 5
        assert warm.metric(SAVED) >= sum(prompt_lens[:-1])
    # Exactly the saved tokens were not prefilled.
    assert warm.metric(PROMPT) + warm.metric(SAVED) == cold.metric(PROMPT)
    assert warm.metric(ENTRIES) > 0 and warm.metric(BYTES) > 0


def completion(c, prompt, seed, max_tokens=12):
    r = c.completions.create(model=model_id(c), prompt=prompt, max_tokens=max_tokens,
                             temperature=1.0, seed=seed, logprobs=3,
                             extra_body={"ignore_eos": True})
    ch = r.choices[0]
    return ch.text, ch.logprobs.token_logprobs, ch.logprobs.top_logprobs


@pytest.mark.parametrize("flags", [
    (),  # the default sparse parameters: every prompt here is below the threshold
    # Threshold 16 * 2 = 32 tokens, chunks of 8: past 32 only chunk-aligned checkpoints serve.
    ("--attn-chunk-size", "16", "--attn-topk", "2", "--prefill-chunk", "8"),
], ids=["below-threshold", "past-threshold"])
def test_completions_sharing_a_prefix_match(pair, flags):
    cold, warm = pair(*flags)
    cc, wc = client(cold), client(warm)
    system = "Context: " + "the quick brown fox jumps over the lazy dog; " * 4
    prompts = [system + f"Q{i}: tell me about item {i}." for i in range(4)]
    prompts.append(prompts[1])  # the same prompt again
    prompts.append(prompts[2] + " And more.")
    for i, p in enumerate(prompts):
        assert completion(wc, p, seed=i) == completion(cc, p, seed=i), f"prompt {i}"
    assert warm.metric(HITS) >= 4
    assert warm.metric(SAVED) >= len(system)
    assert warm.metric(PROMPT) + warm.metric(SAVED) == cold.metric(PROMPT)


@MODES
def test_whole_prompt_repeat_prefills_nothing(make_server, mode):
    srv = make_server("--prefix-cache-bytes", str(1 << 30), "--prefix-cache-min-tokens", "4", *mode)
    c = client(srv)
    prompt = "A prompt that is asked twice, word for word."
    first = completion(c, prompt, seed=3)
    before = srv.metric(PROMPT)
    saved = srv.metric(SAVED)
    assert completion(c, prompt, seed=3) == first
    if on_gpu(srv, mode):  # 44 tokens, below the first grid point: prefilled again, the same
        assert srv.metric(PROMPT) == before + len(prompt)
        assert srv.metric(SAVED) == saved
        return
    assert srv.metric(PROMPT) == before  # served from the checkpoint and its logits
    assert srv.metric(SAVED) == saved + len(prompt)


def test_usage_reports_cached_prompt_tokens(make_server, grpc_stubs):
    """usage.prompt_tokens_details.cached_tokens (openai client) and Usage.cached_tokens (gRPC)
    count the prompt tokens served from the cache: 0 on a miss, the whole prompt on a repeat,
    the shared prefix (at least the first prompt's checkpoint) on an extension."""
    import grpc
    pb, pb_grpc = grpc_stubs
    srv = make_server("--prefix-cache-bytes", str(1 << 30), "--prefix-cache-min-tokens", "4")
    c = client(srv)
    prompt = "Cached tokens are counted here, and nowhere else."

    def cached(p):
        r = c.completions.create(model=model_id(c), prompt=p, max_tokens=4, temperature=0.0)
        assert r.usage.prompt_tokens == len(p.encode())
        return r.usage.prompt_tokens_details.cached_tokens

    assert cached(prompt) == 0
    longer = prompt + " More words after it."
    if on_gpu(srv):  # shorter than the grid: nothing on the GPU serves them
        assert cached(prompt) == 0 and cached(longer) == 0
        return
    assert cached(prompt) == len(prompt)
    got = cached(longer)
    assert len(prompt) <= got < len(longer)
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pb_grpc.InferenceStub(ch)
        events = list(stub.Generate(pb.GenerateRequest(text=longer, max_tokens=4), timeout=60))
    assert events[-1].usage.cached_tokens == len(longer)
    assert events[-1].usage.prompt_tokens == len(longer)


def test_cache_is_on_by_default_off_with_zero_and_bad_flags(make_server):
    """On by default (sized from the backend: 1 GiB on the CPU without a memory budget),
    off with --prefix-cache-bytes 0. On the CPU backend, where the size is that fixed one
    and a repeated prompt always hits."""
    srv = make_server("--backend", "cpu")
    c = client(srv)
    first = completion(c, "some prompt long enough to be cached", seed=1)
    assert completion(c, "some prompt long enough to be cached", seed=1) == first
    assert srv.metric(HITS) == 1 and srv.metric(MISSES) == 1 and srv.metric(ENTRIES) > 0
    assert "prefix cache: 1073741824 bytes" in srv.log_text()
    off = make_server("--backend", "cpu", "--prefix-cache-bytes", "0")
    c = client(off)
    assert completion(c, "some prompt long enough to be cached", seed=1) == first
    assert completion(c, "some prompt long enough to be cached", seed=1) == first
    assert off.metric(HITS) == 0 and off.metric(MISSES) == 0 and off.metric(ENTRIES) == 0
    assert "prefix cache: off" in off.log_text()
    for bad in (["--prefix-cache-bytes", "-2"], ["--prefix-cache-min-tokens", "0"],
                ["--prefix-cache-bytes", "lots"]):
        p = subprocess.run([binary(), "serve", *bad], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0
        assert "prefix-cache" in p.stderr, p.stderr
