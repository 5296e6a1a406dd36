#include "engine/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

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

// Y[m, n] (+)= dot(X[m], W[n]) for rows n in [n0, n1): each weight row is read once for
// all m < M (M small), so decode steps stream the weights at memory bandwidth.
template <int M>
__attribute__((target("avx2,fma"))) void SmallLinearRowsAvx2(const float* X, const float* W, float* Y,
                                                              int64_t n0, int64_t n1, int64_t N, int64_t K,
                                                              bool acc) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = W + n * K;
    float s[M][16] = {};
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < 16; ++j) s[m][j] += X[m * K + k + j] * w[k + j];
    for (int m = 0; m < M; ++m) {
      float t = 0;
      for (int j = 0; j < 16; ++j) t += s[m][j];
      for (int64_t kk = k; kk < K; ++kk) t += X[m * K + kk] * w[kk];
      Y[m * N + n] = acc ? Y[m * N + n] + t : t;
    }
  }
}

template <int M>
void SmallLinearRows(const float* X, const float* W, float* Y, int64_t n0, int64_t n1, int64_t N, int64_t K,
                     bool acc) {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    SmallLinearRowsAvx2<M>(X, W, Y, n0, n1, N, K, acc);
    return;
  }
  for (int64_t n = n0; n < n1; ++n)
    for (int m = 0; m < M; ++m) {
      float t = 0;
      for (int64_t k = 0; k < K; ++k) t += X[m * K + k] * W[n * K + k];
      Y[m * N + n] = acc ? Y[m * N + n] + t : t;
    }
}

template <int M>
void SmallLinear(const float* X, const float* W, float* Y, int64_t N, int64_t K, bool acc) {
  constexpr int64_t kRowsPerJob = 64;
  const int64_t jobs = (N + kRowsPerJob - 1) / kRowsPerJob;
  ParallelFor(jobs, [&](int64_t j) {
    SmallLinearRows<M>(X, W, Y, j * kRowsPerJob, std::min(N, (j + 1) * kRowsPerJob), N, K, acc);
  });
}

}  // namespace

void Linear(const float* X, const float* W, float* Y, int64_t M, int64_t N, int64_t K, bool accumulate) {
  const float beta = accumulate ? 1.0f : 0.0f;
  // Few rows (decode steps): a bandwidth-bound kernel of ours; else OpenBLAS sgemm.
  switch (M) {
    case 1: return SmallLinear<1>(X, W, Y, N, K, accumulate);
    case 2: return SmallLinear<2>(X, W, Y, N, K, accumulate);
    case 3: return SmallLinear<3>(X, W, Y, N, K, accumulate);
    case 4: return SmallLinear<4>(X, W, Y, N, K, accumulate);
    case 5: return SmallLinear<5>(X, W, Y, N, K, accumulate);
    case 6: return SmallLinear<6>(X, W, Y, N, K, accumulate);
    case 7: return SmallLinear<7>(X, W, Y, N, K, accumulate);
    case 8: return SmallLinear<8>(X, W, Y, N, K, accumulate);
    default: break;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, beta, Y, N);
}

void MatMul(const float* X, const float* W, float* Y, int64_t M, int64_t N, int64_t K) {
  if (M == 1) {
    cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.0f, W, N, X, 1, 0.0f, Y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, X, K, W, N, 0.0f, Y, N);
}

namespace {

// A fixed pool; ParallelFor hands out indices through an atomic counter.
class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { Loop(); });
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
