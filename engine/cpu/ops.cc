#include "engine/cpu/ops.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/thread_name.h"

namespace rwkvx::cpu {

void LayerNorm(const float* x, const float* w, const float* b, float* out, int64_t n, float eps) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  double var = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = x[i] - mean;
    var += d * d;
  }
  var /= n;
  const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

namespace {

// A fixed pool; ParallelFor hands out indices through an atomic counter.
class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n - 1; ++i)
      workers_.emplace_back([this, i] {
        NameThisThread("rwkvx-cpu-" + std::to_string(i + 1));
        Loop();
      });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void Run(int64_t n, const std::function<void(int64_t)>& fn) {
    if (workers_.empty() || n <= 1 || in_pool_) {  // nested calls run inline
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    std::unique_lock<std::mutex> run_lock(run_mu_);  // one job at a time
    {
      std::lock_guard<std::mutex> l(mu_);
      fn_ = &fn;
      n_ = n;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    Work();
    std::unique_lock<std::mutex> l(mu_);
    done_cv_.wait(l, [&] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void Work() {
    in_pool_ = true;
    for (int64_t i; (i = next_.fetch_add(1)) < n_;) (*fn_)(i);
    in_pool_ = false;
  }
  static thread_local bool in_pool_;
  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      Work();
      std::lock_guard<std::mutex> l(mu_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

thread_local bool Pool::in_pool_ = false;
std::atomic<int> g_threads{0};

Pool& GetPool() {
  static Pool pool(NumThreads());
  return pool;
}

}  // namespace

void SetNumThreads(int n) { g_threads.store(n); }
int NumThreads() {
  int n = g_threads.load();
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) { GetPool().Run(n, fn); }

}  // namespace rwkvx::cpu
