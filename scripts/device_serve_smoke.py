"""On the device machine: the official `openai` client gets a streamed completion from
`rwkvx serve --backend cuda` (scripts/device_serve_smoke.sh starts the server)."""
import json
import sys
import time

import openai

ports = json.load(open(sys.argv[1]))
client = openai.OpenAI(base_url=f"http://127.0.0.1:{ports['http_port']}/v1", api_key="none")
models = client.models.list()
m = models.data[0]
print("model:", m.id, "backend:", getattr(m, "backend", None) or m.model_extra.get("backend"))
t0 = time.perf_counter()
chunks, text, finish = 0, "", None
stream = client.completions.create(model=m.id, prompt="The grass is green. The sky is", max_tokens=64,
                                   temperature=0, stream=True, stream_options={"include_usage": True})
usage = None
for ev in stream:
    if ev.choices:
        chunks += 1
        text += ev.choices[0].text
        finish = ev.choices[0].finish_reason or finish
    if ev.usage:
        usage = ev.usage
dt = time.perf_counter() - t0
print(f"streamed {chunks} chunks in {dt*1e3:.0f} ms, finish_reason={finish}, usage={usage}")
print("text:", repr(text))
backend = getattr(m, "backend", None) or (m.model_extra or {}).get("backend")
ok = chunks > 0 and usage is not None and usage.completion_tokens == 64 and backend == "cuda"
print("DEVICE SERVE SMOKE", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
