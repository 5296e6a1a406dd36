// bench_sessions: snapshot and restore throughput of one session of the 0.2B shape (random
// weights, as bench/cpu) at several context lengths, on the CPU backend:
//   snapshot = Backend::ExportSession + SerializeSnapshot (what GET .../snapshot does),
//   restore  = ParseSnapshot + Backend::ImportSession (PUT .../snapshot, then first use),
//   save     = SessionFiles::Write (temp file + fsync + rename + fsync dir),
//   load     = SessionFiles::Read.
// The session's state is synthetic (random values, ct = context KV rows per sparse block,
// i.e. no compression): throughput depends on bytes, not on how the state was computed.
// Prints a table and writes JSON; never asserts on timings (bench/sessions/README.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/snapshot.h"
#include "nlohmann/json.hpp"
#include "server/sessions/session_files.h"

namespace {

using Clock = std::chrono::steady_clock;
double Sec(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Fill(std::vector<float>& v, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& x : v) x = d(rng);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rwkvx;
  std::vector<int> contexts = {8192, 20480};
  int reps = 3;
  std::string json_path = "bench/out/sessions.json";
  std::string dir = "/tmp/rwkvx-bench-sessions";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--contexts") {
      contexts.clear();
      size_t p = 0;
      while (p < v.size()) {
        size_t q = v.find(',', p);
        contexts.push_back(std::atoi(v.substr(p, q - p).c_str()));
        if (q == std::string::npos) break;
        p = q + 1;
      }
    } else if (k == "--reps") reps = std::max(1, std::atoi(v.c_str()));
    else if (k == "--json") json_path = v;
    else if (k == "--dir") dir = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  ModelShape s;  // the 0.2B shape (bench/cpu, bench/engine)
  s.vocab = 65536; s.head_size = 64; s.n_embd = 768; s.n_rwkv_layer = 12; s.n_attn_layer = 4;
  s.rank_w = 64; s.rank_a = 64; s.rank_v = 32; s.rank_g = 128;
  s.n_head = s.n_embd / 64;
  s.ffn_dim = 4 * s.n_embd;
  auto model = MakeRandomModel(s, 1234, "0.2b-random");
  model->attn.max_kv_cache_size = 0;  // no compression: ct = context
  CpuBackendOptions co;
  co.threads = 1;
  auto be = MakeCpuBackend(model, co);
  SessionFilesOptions fo;
  fo.dir = dir;
  auto files = SessionFiles::Open(fo);
  if (!files.ok()) { std::fprintf(stderr, "%s\n", std::string(files.status().message()).c_str()); return 1; }
  std::printf("0.2B shape: C=%d R=%d M=%d H=%d; CPU backend; %d reps (median); files in %s\n", s.n_embd,
              s.n_rwkv_layer, s.n_attn_layer, s.n_head, reps, dir.c_str());
  std::printf("%8s %10s | %-22s | %-22s | %-22s | %-22s | %s\n", "context", "MB", "snapshot s (GB/s)",
              "restore s (GB/s)", "save s (GB/s)", "load s (GB/s)", "exact");
  nlohmann::json out = {{"shape", "0.2b"}, {"backend", "cpu"}, {"reps", reps}, {"rows", nlohmann::json::array()}};
  std::mt19937 rng(7);
  for (int ctx : contexts) {
    SessionState st = SessionState::Zero(s);
    for (auto& l : st.rwkv) { Fill(l.att_prev, rng); Fill(l.wkv, rng); Fill(l.ffn_prev, rng); }
    for (auto& a : st.attn) {
      a.ct = ctx;
      a.k.resize(static_cast<size_t>(ctx) * s.n_embd);
      a.v.resize(a.k.size());
      Fill(a.k, rng); Fill(a.v, rng); Fill(a.ffn_prev, rng);
    }
    st.tokens_seen = ctx;
    auto sid = be->ImportSession(st);
    if (!sid.ok()) { std::fprintf(stderr, "import: %s\n", std::string(sid.status().message()).c_str()); return 1; }
    std::vector<int32_t> pending = {42};
    std::vector<double> t_snap, t_rest, t_save, t_load;
    std::string bytes;
    bool exact = true;
    for (int r = 0; r < reps; ++r) {
      auto t0 = Clock::now();
      auto ex = be->ExportSession(*sid);
      bytes = SerializeSnapshot(*model, *ex, &pending);
      auto t1 = Clock::now();
      std::vector<int32_t> back_pending;
      auto parsed = ParseSnapshot(*model, bytes, &back_pending);
      auto sid2 = be->ImportSession(*parsed);
      auto t2 = Clock::now();
      absl::Status w = (*files)->Write("bench", bytes);
      auto t3 = Clock::now();
      auto rd = (*files)->Read("bench");
      auto t4 = Clock::now();
      if (!w.ok() || !rd.ok()) { std::fprintf(stderr, "file I/O failed\n"); return 1; }
      auto ex2 = be->ExportSession(*sid2);
      exact = exact && SerializeSnapshot(*model, *ex2, &back_pending) == bytes && *rd == bytes;
      (void)be->FreeSession(*sid2);
      t_snap.push_back(Sec(t0, t1));
      t_rest.push_back(Sec(t1, t2));
      t_save.push_back(Sec(t2, t3));
      t_load.push_back(Sec(t3, t4));
    }
    (void)be->FreeSession(*sid);
    (void)(*files)->Remove("bench");
    const double gb = bytes.size() / 1e9;
    auto cell = [&](double t) {
      char b[64];
      std::snprintf(b, sizeof b, "%.3f (%.2f)", t, gb / t);
      return std::string(b);
    };
    double sn = Median(t_snap), rs = Median(t_rest), sv = Median(t_save), ld = Median(t_load);
    std::printf("%8d %10.1f | %-22s | %-22s | %-22s | %-22s | %s\n", ctx, bytes.size() / 1e6, cell(sn).c_str(),
                cell(rs).c_str(), cell(sv).c_str(), cell(ld).c_str(), exact ? "yes" : "NO");
    out["rows"].push_back({{"context", ctx}, {"bytes", bytes.size()}, {"snapshot_s", sn}, {"restore_s", rs},
                           {"save_s", sv}, {"load_s", ld}, {"snapshot_gbps", gb / sn}, {"restore_gbps", gb / rs},
                           {"save_gbps", gb / sv}, {"load_gbps", gb / ld}, {"exact", exact}});
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
