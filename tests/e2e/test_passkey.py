"""The embedded default model (no --model) retrieves a passkey hidden in an 8K-byte prompt,
asked through the official openai client.

Path taken (server/embedded/MODEL_CARD.md): the scheduler prefills the prompt in calls of
--prefill-chunk (128) tokens; past the model's full-attention threshold (512) a prefill
call attends only within itself, so the prompt's last logits cannot see the key. They do
not need to: the answer starts with " ", which the question predicts alone. Each digit is
then predicted by a single-token decode step, whose sparse attention selects the top-k
chunks of the whole cache by q . mean(chunk keys); the chunk holding the key must win.
"""
import os
import sys

import openai
import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "train"))
from data import passkey_prompt  # noqa: E402

DEMO = "rwkvx-embedded-demo-bytes"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_default_model_is_the_trained_demo_model(client, server):
    models = client.models.list().data
    assert [m.id for m in models] == [DEMO]
    raw = requests.get(server.base + "/v1/models", timeout=10).json()["data"][0]
    assert raw["random_weights"] is False
    assert "trained" in raw["description"]


@pytest.mark.parametrize("depth,key", [(0.5, 48213), (0.2, 70356)])
def test_passkey_in_8k_prompt(client, depth, key):
    prompt = passkey_prompt(8192, depth, key)
    assert len(prompt.encode()) == 8192 and str(key) in prompt
    r = client.completions.create(model=DEMO, prompt=prompt, max_tokens=8, temperature=0)
    assert r.usage.prompt_tokens == 8192
    assert r.choices[0].text.startswith(f" {key}"), r.choices[0].text


def test_a_prompt_without_the_key_does_not_yield_it(client):
    # The assertion above could fail: a prompt whose key differs yields a different answer.
    prompt = passkey_prompt(8192, 0.5, 11111)
    r = client.completions.create(model=DEMO, prompt=prompt, max_tokens=8, temperature=0)
    assert "48213" not in r.choices[0].text
