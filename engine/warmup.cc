#include "engine/warmup.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"

namespace rwkvx {

absl::StatusOr<WarmUpReport> WarmUp(Backend& backend, int max_rows, int max_items) {
  const auto t0 = std::chrono::steady_clock::now();
  WarmUpReport rep;
  const int V = backend.model().shape.vocab;
  if (V <= 0) return absl::InvalidArgumentError("warm-up: the model has no vocabulary");
  max_rows = std::max(1, max_rows);
  max_items = std::max(1, max_items);
  std::vector<SessionId> ids;
  auto free_all = [&] {
    for (SessionId id : ids) backend.FreeSession(id).IgnoreError();
    ids.clear();
  };
  // Sessions as needed; stops (without an error) where the backend has no more room.
  auto grow = [&](int n) {
    while (static_cast<int>(ids.size()) < n) {
      auto id = backend.CreateSession();
      if (!id.ok()) break;
      ids.push_back(*id);
    }
    return static_cast<int>(ids.size());
  };
  const bool device = backend.SupportsDeviceSampling();
  std::vector<DeviceSampling> specs(static_cast<size_t>(max_items));
  for (size_t k = 0; k < specs.size(); ++k) {
    DeviceSampling& s = specs[k];
    s.temperature = k % 3 == 0 ? 0.0f : 1.0f;  // greedy, top-p, top-k rows
    s.top_p = k % 3 == 1 ? 0.9f : 1.0f;
    s.top_k = k % 3 == 2 ? 40 : 0;
    s.uniform = static_cast<double>(k % 97) / 97.0;
  }
  std::vector<float> logits;
  std::vector<SampledToken> drawn;
  auto run = [&](std::vector<StepInput>& items, bool sample) -> absl::Status {
    for (size_t k = 0; k < items.size(); ++k) items[k].sample = sample && device ? &specs[k % specs.size()] : nullptr;
    absl::Status st = sample && device ? backend.StepSampled(items, &logits, &drawn) : backend.Step(items, &logits);
    ++rep.steps;
    return st;
  };
  absl::Status st = [&]() -> absl::Status {
    // 1. The largest prefill step.
    const int np = grow(std::min(4, max_items));
    if (np == 0) return absl::ResourceExhaustedError("warm-up: no session could be created");
    std::vector<StepInput> items;
    for (int k = 0; k < np; ++k) {
      const int n = max_rows / np + (k < max_rows % np ? 1 : 0);
      if (n == 0) continue;
      StepInput in;
      in.session = ids[static_cast<size_t>(k)];
      for (int t = 0; t < n; ++t) in.tokens.push_back(static_cast<int32_t>((t * 31 + k * 7 + 1) % V));
      items.push_back(std::move(in));
    }
    if (auto s = run(items, true); !s.ok()) return s;
    // 2. Decode steps of 1, 2, 4, ... and max_items sessions (graphs where the backend keeps them).
    std::vector<int> sizes;
    for (int n = 1; n < max_items; n *= 2) sizes.push_back(n);
    sizes.push_back(max_items);
    for (int n : sizes) {
      const int have = std::min(n, grow(n));
      items.assign(static_cast<size_t>(have), StepInput{});
      for (int k = 0; k < have; ++k) {
        items[static_cast<size_t>(k)].session = ids[static_cast<size_t>(k)];
        items[static_cast<size_t>(k)].tokens = {static_cast<int32_t>((k * 13 + n) % V)};
      }
      if (auto s = run(items, true); !s.ok()) return s;
      rep.sessions = std::max(rep.sessions, have);
      if (have < n) break;  // no room for more
    }
    // 3. One decode step that returns logits rows.
    items.resize(std::min<size_t>(items.size(), 4));
    for (auto& in : items) in.tokens = {1};
    return run(items, false);
  }();
  free_all();
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat("warm-up step ", rep.steps, ": ", st.message()));
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace rwkvx
