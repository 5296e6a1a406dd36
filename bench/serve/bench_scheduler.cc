// bench_scheduler: the scheduler loop's own cost per generated token, without a model.
// A stand-in backend draws every token "on the device" at once (a hash of the session's
// history; no logits, no sleep), so what the loop thread spends is the planning, the
// results (emitting tokens: detokenizing, stop checks, stream pushes, metrics) and the
// rest of the loop: the host work a GPU step has to hide. N requests at a concurrency of
// C run to max_tokens; reader threads drain the streams the way the HTTP front end does.
// Prints a table and writes JSON (--json). Timing only; never asserts on times.
//   bench_scheduler --vocab rwkv_vocab_v20230424.txt --concurrency 256 --requests 1024
// --step-us N emulates a device that takes N us a step (EndStep waits until then), and
// --overlap-steps 0|1 says whether the loop's host work may run meanwhile.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"

namespace {

using namespace rwkvx;
using Clock = std::chrono::steady_clock;

// Generated tokens through StepSampled's device path: a running hash per session picks a
// token in [256, vocab) (never end of text), so every request runs to max_tokens. Rows
// asked for through Step (a prompt's end goes to the host sampler) are pseudo-random.
class DrawOnlyBackend : public Backend {
 public:
  explicit DrawOnlyBackend(int vocab) {
    auto m = std::make_shared<Model>();
    m->name = "draw-only";
    m->shape.vocab = vocab;
    model_ = m;
  }
  std::string Name() const override { return "draw-only"; }
  const Model& model() const override { return *model_; }
  absl::StatusOr<SessionId> CreateSession() override {
    sessions_[++next_] = 0x9e3779b97f4a7c15ull;
    return next_;
  }
  absl::Status FreeSession(SessionId id) override {
    sessions_.erase(id);
    return absl::OkStatus();
  }
  absl::StatusOr<SessionState> ExportSession(SessionId) const override {
    return absl::UnimplementedError("draw-only backend");
  }
  absl::StatusOr<SessionId> ImportSession(const SessionState&) override {
    return absl::UnimplementedError("draw-only backend");
  }
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    return StepSampled(items, logits, nullptr);
  }
  bool SupportsDeviceSampling() const override { return true; }
  absl::Status StepSampled(const std::vector<StepInput>& items, std::vector<float>* logits,
                           std::vector<SampledToken>* sampled) override {
    logits->clear();
    if (sampled) sampled->clear();
    const uint64_t V = static_cast<uint64_t>(model_->shape.vocab);
    for (const StepInput& in : items) {
      uint64_t& h = sessions_[in.session];
      for (int32_t t : in.tokens) h = (h ^ static_cast<uint64_t>(t)) * 0x100000001b3ull;
      if (!in.want_logits) continue;
      if (in.sample) {
        if (!sampled) return absl::InvalidArgumentError("draw-only backend: device sampling through Step");
        sampled->push_back(SampledToken{static_cast<int32_t>(256 + (h >> 17) % (V - 256)), -1.0f});
        continue;
      }
      // A row for the host sampler (a prompt's last row): small pseudo-random logits.
      const size_t at = logits->size();
      logits->resize(at + V);
      uint64_t x = h;
      for (size_t v = 0; v < V; ++v) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        (*logits)[at + v] = static_cast<float>(x >> 40) * (8.0f / 16777216.0f);
      }
    }
    return absl::OkStatus();
  }
  // --step-us: a device that needs this long per step. BeginStep computes the outputs at
  // once and notes when the "device" would be done; EndStep waits until then. The loop's
  // host work between the two (--overlap-steps 1) is hidden behind that time.
  absl::Status BeginStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                         std::vector<SampledToken>* sampled) override {
    absl::Status st = sampled ? StepSampled(items, logits, sampled) : Step(items, logits);
    done_at_ = Clock::now() + std::chrono::microseconds(step_us);
    return st;
  }
  absl::Status EndStep() override {
    std::this_thread::sleep_until(done_at_);
    return absl::OkStatus();
  }
  int step_us = 0;
  size_t SessionBytes(SessionId) const override { return 1000; }
  size_t SessionKvTokens(SessionId) const override { return 0; }
  MemoryInfo Memory() const override { return {}; }
  size_t MaxSessionBytes() const override { return 1000; }
  size_t SessionBytesFor(size_t) const override { return 1000; }
  size_t StepBytes(SessionId, size_t) const override { return 0; }

 private:
  std::shared_ptr<Model> model_;
  std::map<SessionId, uint64_t> sessions_;
  SessionId next_ = 0;
  Clock::time_point done_at_;
};

struct Args {
  std::string vocab, json;
  int concurrency = 256, requests = 1024, max_tokens = 128, prompt_tokens = 16, readers = 4;
  float temperature = 1.0f, top_p = 0.9f;
  int stream_writer = 1;  // SchedulerOptions::stream_writer (--stream-writer 0|1)
  int overlap_steps = 1;  // SchedulerOptions::overlap_steps (--overlap-steps 0|1)
  int step_us = 0;        // emulated device time per step (--step-us)
};

// One reader thread: drains its streams when woken (the HTTP front end's role).
struct Reader {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--vocab") a.vocab = v;
    else if (k == "--json") a.json = v;
    else if (k == "--concurrency") a.concurrency = std::stoi(v);
    else if (k == "--requests") a.requests = std::stoi(v);
    else if (k == "--max-tokens") a.max_tokens = std::stoi(v);
    else if (k == "--prompt-tokens") a.prompt_tokens = std::stoi(v);
    else if (k == "--readers") a.readers = std::stoi(v);
    else if (k == "--temperature") a.temperature = std::stof(v);
    else if (k == "--top-p") a.top_p = std::stof(v);
    else if (k == "--stream-writer") a.stream_writer = std::stoi(v);
    else if (k == "--overlap-steps") a.overlap_steps = std::stoi(v);
    else if (k == "--step-us") a.step_us = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  std::unique_ptr<Tokenizer> tok;
  if (a.vocab.empty()) {
    tok = MakeByteTokenizer();
  } else {
    auto t = LoadWorldTokenizer(a.vocab);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    tok = std::move(*t);
  }
  const int vocab = a.vocab.empty() ? 257 + 256 : 65536;
  ServerMetrics metrics;
  SchedulerOptions o;
  o.max_running = a.concurrency;
  o.max_queued = a.requests;
  o.max_batch_tokens = std::max(1024, a.concurrency * 2);
  o.device_sampling = true;
  o.stream_writer = a.stream_writer != 0;
  o.overlap_steps = a.overlap_steps != 0;
  auto draw = std::make_unique<DrawOnlyBackend>(vocab);
  draw->step_us = a.step_us;
  Scheduler sched(std::move(draw), tok.get(), o, &metrics);
  sched.Start();

  std::vector<Reader> readers(a.readers);
  std::atomic<int> finished{0}, submitted{0};
  std::atomic<long> tokens{0};
  std::mutex live_mu;
  std::vector<std::vector<std::shared_ptr<RequestStream>>> live(a.readers);
  std::atomic<bool> stop{false};
  auto submit = [&](int i) {
    GenerateRequest r;
    for (int t = 0; t < a.prompt_tokens; ++t) r.prompt.push_back(300 + (i * 31 + t * 7) % 6000);
    r.max_tokens = a.max_tokens;
    r.sampling.temperature = a.temperature;
    r.sampling.top_p = a.top_p;
    r.sampling.seed = static_cast<uint64_t>(i) + 1;
    auto s = std::make_shared<RequestStream>(std::move(r), 1 << 20);
    Reader& rd = readers[i % a.readers];
    s->SetNotify([&rd] {
      std::lock_guard<std::mutex> l(rd.mu);
      rd.woken = true;
      rd.cv.notify_one();
    });
    {
      std::lock_guard<std::mutex> l(live_mu);
      live[i % a.readers].push_back(s);
    }
    if (!sched.Submit(s).ok()) std::fprintf(stderr, "submit %d refused\n", i);
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < a.readers; ++r) {
    threads.emplace_back([&, r] {
      std::vector<GenerateEvent> evs;
      std::string sink;
      while (!stop.load()) {
        {
          std::unique_lock<std::mutex> l(readers[r].mu);
          readers[r].cv.wait_for(l, std::chrono::milliseconds(50), [&] { return readers[r].woken; });
          readers[r].woken = false;
        }
        std::vector<std::shared_ptr<RequestStream>> mine;
        {
          std::lock_guard<std::mutex> l(live_mu);
          mine = live[r];
        }
        for (auto& s : mine) {
          evs.clear();
          s->PopAll(&evs);
          bool done = false;
          for (auto& e : evs) {
            tokens += static_cast<long>(e.tokens.size());
            sink.assign("data: ");  // roughly what an SSE chunk costs to build
            sink += e.text;
            if (e.final) {
              done = true;
              if (e.finish != FinishReason::kLength) {
                std::lock_guard<std::mutex> l(live_mu);
                std::fprintf(stderr, "a request ended with %s: %s\n", FinishReasonName(e.finish),
                             std::string(e.status.message()).c_str());
              }
            }
          }
          if (done) {
            {
              std::lock_guard<std::mutex> l(live_mu);
              auto& v = live[r];
              v.erase(std::find(v.begin(), v.end(), s));
            }
            const int n = submitted.fetch_add(1);
            if (n < a.requests) submit(n);
            finished.fetch_add(1);
          }
        }
      }
    });
  }
  const auto t0 = Clock::now();
  for (int i = 0; i < a.concurrency && i < a.requests; ++i) submit(submitted.fetch_add(1));
  while (finished.load() < a.requests) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  stop.store(true);
  for (auto& r : readers) {
    std::lock_guard<std::mutex> l(r.mu);
    r.cv.notify_one();
  }
  for (auto& t : threads) t.join();
  sched.Stop();

  const double gen = metrics.generation_tokens->Value();
  const double plan = metrics.sched_plan_seconds->Value(), backend = metrics.sched_backend_seconds->Value(),
               results = metrics.sched_results_seconds->Value(), other = metrics.sched_other_seconds->Value();
  const double steps = metrics.steps->Value();
  std::printf("%d requests, concurrency %d, %d tokens each, %s vocabulary, %d readers, device step %d us, "
              "overlap %d\n",
              a.requests, a.concurrency, a.max_tokens, a.vocab.empty() ? "byte" : "world", a.readers, a.step_us,
              a.overlap_steps);
  std::printf("| wall s | gen tok/s | steps | plan us/step | backend us/step | results us/step | other us/step | "
              "loop us/token |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| %.3f | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.2f |\n", wall, gen / wall, steps,
              1e6 * plan / steps, 1e6 * backend / steps, 1e6 * results / steps, 1e6 * other / steps,
              1e6 * (plan + results + other) / gen);
  if (!a.json.empty()) {
    std::ofstream js(a.json);
    js << "{\"requests\":" << a.requests << ",\"concurrency\":" << a.concurrency << ",\"max_tokens\":" << a.max_tokens
       << ",\"stream_writer\":" << a.stream_writer << ",\"overlap_steps\":" << a.overlap_steps
       << ",\"step_us\":" << a.step_us
       << ",\"wall_s\":" << wall << ",\"gen_tok_per_s\":" << gen / wall << ",\"steps\":" << steps
       << ",\"plan_s\":" << plan << ",\"backend_s\":" << backend << ",\"results_s\":" << results
       << ",\"other_s\":" << other << ",\"generated\":" << gen << ",\"streamed_tokens\":" << tokens.load() << "}\n";
  }
  return 0;
}
