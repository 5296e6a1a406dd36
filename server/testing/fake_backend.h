// A deterministic fake engine::Backend for scheduler and frontend tests: the logits of a
// session depend only on the tokens it has consumed (a running hash), never on the batch.
// The greedy token after a history is 1 + hash % (vocab - 1): never end of text (id 0).
// Memory: a session holds fixed_bytes plus token_bytes per token it consumed (capped at
// cap_tokens when set); with a capacity, CreateSession / ImportSession refuse past it and
// a Step that would grow past it fails with ResourceExhausted (counted in
// memory_failures: the scheduler must never let that happen). Export / Import carry the
// running hash, so a session moved out and back continues exactly.
// Threading: like every Backend, one caller thread; the counters are atomics so that a test
// thread may read them.
#pragma once

#include <atomic>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <thread>

#include "engine/backend.h"
#include "engine/sampling/sampler.h"

namespace rwkvx::testing {

class FakeBackend : public Backend {
 public:
  explicit FakeBackend(int vocab = 257) {
    auto m = std::make_shared<Model>();
    m->name = "fake";
    m->shape.vocab = vocab;
    model_ = m;
  }
  std::string Name() const override { return "fake"; }
  const Model& model() const override { return *model_; }

  absl::StatusOr<SessionId> CreateSession() override { return Add(S{}); }
  absl::Status FreeSession(SessionId id) override {
    if (!sessions_.erase(id)) return absl::NotFoundError("fake: no session");
    live.store(static_cast<int>(sessions_.size()));
    return absl::OkStatus();
  }
  absl::StatusOr<SessionState> ExportSession(SessionId id) const override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError("fake: no session");
    SessionState st;
    st.tokens_seen = it->second.seen;
    st.rwkv.resize(1);  // the hash, 16 bits per float (exact)
    for (int i = 0; i < 4; ++i) st.rwkv[0].wkv.push_back(static_cast<float>((it->second.h >> (16 * i)) & 0xffff));
    exports.fetch_add(1);
    return st;
  }
  absl::StatusOr<SessionId> ImportSession(const SessionState& st) override {
    if (st.rwkv.size() != 1 || st.rwkv[0].wkv.size() != 4) return absl::InvalidArgumentError("fake: bad state");
    S s;
    s.seen = st.tokens_seen;
    s.h = 0;
    for (int i = 0; i < 4; ++i) s.h |= static_cast<uint64_t>(st.rwkv[0].wkv[i]) << (16 * i);
    return Add(s);
  }
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    if (in_flight_) return absl::FailedPreconditionError("fake: Step while a step is in flight");
    if (step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms));
    steps.fetch_add(1);
    if (fail_steps.load()) return absl::InternalError("fake: step failed at /secret/path");
    if (lose_backend.load()) {
      healthy = false;
      return BackendLostError("fake: device lost");
    }
    size_t grow = 0;
    for (const auto& in : items) grow += StepBytes(in.session, in.tokens.size());
    if (capacity > 0 && Used() + grow > capacity) {
      memory_failures.fetch_add(1);
      return absl::ResourceExhaustedError("fake: memory budget exhausted");
    }
    const int V = model_->shape.vocab;
    logits->clear();
    int batch = 0;
    for (const auto& in : items) {
      auto it = sessions_.find(in.session);
      if (it == sessions_.end()) return absl::NotFoundError("fake: no session");
      for (int32_t t : in.tokens) {
        it->second.h = (it->second.h ^ static_cast<uint64_t>(t + 1)) * 0x100000001b3ULL;
        ++it->second.seen;
      }
      ++batch;
      if (!in.want_logits) continue;
      uint64_t h = it->second.h;
      int best = 1 + static_cast<int>(h % static_cast<uint64_t>(V - 1));
      for (int v = 0; v < V; ++v) {
        uint64_t x = (h + static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ULL) >> 40;
        logits->push_back(static_cast<float>(x % 1000) / 1000.0f + (v == best ? 5.0f : 0.0f));
      }
    }
    max_batch.store(std::max(max_batch.load(), batch));
    return absl::OkStatus();
  }
  // With `device_sampling`: sampled items are drawn here from the spec alone (adjustments
  // applied to the row, then Sampler::SampleAdjusted with the spec's draw), like a GPU
  // backend would; their rows do not reach the caller.
  bool SupportsDeviceSampling() const override { return device_sampling; }
  absl::Status StepSampled(const std::vector<StepInput>& items, std::vector<float>* logits,
                           std::vector<SampledToken>* sampled) override {
    if (in_flight_) return absl::FailedPreconditionError("fake: StepSampled while a step is in flight");
    if (!device_sampling) return Backend::StepSampled(items, logits, sampled);
    sampled->clear();
    std::vector<float> all;
    absl::Status st = Step(items, &all);
    if (!st.ok()) return st;
    logits->clear();
    const int V = model_->shape.vocab;
    size_t row = 0;
    for (const auto& in : items) {
      if (!in.want_logits) continue;
      float* r = all.data() + row++ * static_cast<size_t>(V);
      if (!in.sample) {
        logits->insert(logits->end(), r, r + V);
        continue;
      }
      const DeviceSampling& ds = *in.sample;
      for (const auto& [t, v] : ds.adjust)
        if (t < 0 || t >= V) return absl::InvalidArgumentError("fake: adjusted token out of range");
      if (ds.allowed.size() > static_cast<size_t>((V + 31) / 32))
        return absl::InvalidArgumentError("fake: mask longer than the vocabulary");
      ApplyDeviceAdjustments(ds.adjust, r, V, &ds.allowed);
      SamplingParams p;
      p.temperature = ds.temperature;
      p.top_p = ds.top_p;
      p.top_k = ds.top_k;
      Sampler s(p, nullptr);
      SampleResult res = s.SampleAdjusted(r, V, ds.uniform);
      sampled->push_back(SampledToken{res.token, res.logprob});
      device_sampled.fetch_add(1);
    }
    return absl::OkStatus();
  }
  // Steps in two calls the way a device queue runs them (in_flight_steps, the default):
  // BeginStep applies the step to the sessions at once (as the CUDA backend's host
  // bookkeeping does: later calls see the state after it) but hands its outputs over only
  // at EndStep, clearing the caller's vectors meanwhile, so that a caller reading them
  // early sees nothing; a failing step (fail_steps, lose_backend) reports at EndStep.
  absl::Status BeginStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                         std::vector<SampledToken>* sampled) override {
    if (!in_flight_steps) return Backend::BeginStep(items, logits, sampled);
    if (in_flight_) return absl::FailedPreconditionError("fake: BeginStep while a step is in flight");
    held_status_ = sampled ? StepSampled(items, &held_logits_, &held_sampled_) : Step(items, &held_logits_);
    logits->clear();
    if (sampled) sampled->clear();
    out_logits_ = logits;
    out_sampled_ = sampled;
    in_flight_ = true;
    begun.fetch_add(1);
    return absl::OkStatus();
  }
  absl::Status EndStep() override {
    if (!in_flight_) return absl::OkStatus();
    in_flight_ = false;
    if (!held_status_.ok()) return held_status_;
    out_logits_->swap(held_logits_);
    if (out_sampled_) out_sampled_->swap(held_sampled_);
    return absl::OkStatus();
  }
  size_t SessionBytes(SessionId id) const override {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? 0 : Bytes(static_cast<size_t>(it->second.seen));
  }
  size_t SessionKvTokens(SessionId id) const override {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? 0 : static_cast<size_t>(it->second.seen);
  }
  MemoryInfo Memory() const override {
    MemoryInfo m;
    m.used_bytes = Used();
    m.capacity_bytes = capacity;
    return m;
  }
  size_t MaxSessionBytes() const override { return cap_tokens > 0 ? Bytes(cap_tokens) : fixed_bytes; }
  // Reservations see token_bytes, not unreserved_token_bytes (growth like copy-on-write
  // copies, which a reservation cannot foresee).
  size_t SessionBytesFor(size_t kv_tokens) const override {
    return fixed_bytes + token_bytes * (cap_tokens > 0 ? std::min(kv_tokens, cap_tokens) : kv_tokens);
  }
  size_t StepBytes(SessionId id, size_t tokens) const override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return 0;
    return Bytes(static_cast<size_t>(it->second.seen) + tokens) - Bytes(static_cast<size_t>(it->second.seen));
  }
  bool Healthy() const override { return healthy; }

  // Knobs and observations (set before Start, read any time).
  int step_delay_ms = 0;
  int max_sessions = 0;
  std::atomic<bool> fail_steps{false};
  std::atomic<int> live{0};
  std::atomic<int> steps{0};
  std::atomic<int> max_batch{0};
  bool device_sampling = false;
  std::atomic<int> device_sampled{0};  // tokens drawn through StepSampled's sample specs
  size_t capacity = 0;  // Memory().capacity_bytes (0 = unbounded)
  size_t fixed_bytes = 1000, token_bytes = 0, cap_tokens = 0;
  size_t unreserved_token_bytes = 0;
  std::atomic<int> memory_failures{0};
  mutable std::atomic<int> exports{0};
  std::atomic<bool> lose_backend{false};  // the next step fails as a lost device
  bool healthy = true;
  bool in_flight_steps = true;
  std::atomic<int> begun{0};  // steps begun in two calls

 private:
  struct S {
    uint64_t h = 0xcbf29ce484222325ULL;
    long long seen = 0;
  };
  size_t Bytes(size_t seen) const {
    return fixed_bytes + (token_bytes + unreserved_token_bytes) * (cap_tokens > 0 ? std::min(seen, cap_tokens) : seen);
  }
  size_t Used() const {
    size_t n = 0;
    for (const auto& [id, s] : sessions_) n += Bytes(static_cast<size_t>(s.seen));
    return n;
  }
  absl::StatusOr<SessionId> Add(S s) {
    if (max_sessions > 0 && static_cast<int>(sessions_.size()) >= max_sessions) {
      return absl::ResourceExhaustedError("fake: no room");
    }
    if (capacity > 0 && Used() + Bytes(static_cast<size_t>(s.seen)) > capacity) return absl::ResourceExhaustedError("fake: no memory");
    SessionId id = next_++;
    sessions_[id] = s;
    live.store(static_cast<int>(sessions_.size()));
    return id;
  }

  std::shared_ptr<Model> model_;
  std::map<SessionId, S> sessions_;
  bool in_flight_ = false;
  absl::Status held_status_;
  std::vector<float> held_logits_;
  std::vector<SampledToken> held_sampled_;
  std::vector<float>* out_logits_ = nullptr;
  std::vector<SampledToken>* out_sampled_ = nullptr;
  SessionId next_ = 1;
};

}  // namespace rwkvx::testing
