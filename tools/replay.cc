// rwkvx replay: the parity tool. Runs a token script through one CPU-engine session and
// writes the float32 logits of each call's last position (little-endian, concatenated).
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/initial_state.h"
#include "engine/model.h"
#include "tools/cli_args.h"
#include "tools/subcommands.h"

namespace rwkvx {
namespace {

constexpr char kUsage[] = R"(usage: rwkvx replay --model M.pth --script S.json --out L.f32 [flags]

Runs the calls of S.json ({"calls": [{"kind": "seq"|"one", "tokens": [...]}, ...]}) in order
on one session ("seq" = one prefill of all its tokens, "one" = one single-token decode) and
writes, for each call, the V float32 logits of its last position to L.f32.

flags (unset ones take the reference defaults, with --max-kv-cache-size 0):
  --model PATH                 checkpoint (.pth or .safetensors)
  --script PATH                token script (JSON)
  --out PATH                   output logits file
  --moba-chunk-size N          chunk size B (default 2048; 2000 with --reference 0.2)
  --moba-topk K                chunks selected in sparse decode (default 3)
  --full-attn-threshold N      full/sparse threshold (default chunk*topk; 8000 with --reference 0.2)
  --max-kv-cache-size N        compress when the cache exceeds N (0 = never; default 0)
  --kv-cache-window-size N     rows always kept by compression (default 2000)
  --min-kv-cache-size N        cache size after compression (default 16000)
  --attn-mode sparse|full      decode mode (default sparse; full with --reference 0.2)
  --prefill-attn-mode chunk|full  prefill mode (default chunk)
  --reference 0.1|0.2          which package generation's defaults to use (default 0.1)
  --threads N                  CPU threads (default: all cores)
  --initial-state PATH         start from this state-tuning file (blocks.N.att.time_state)
)";

absl::Status Run(const CliArgs& a) {
  for (const char* req : {"model", "script", "out"})
    if (!a.Has(req)) return absl::InvalidArgumentError(std::string("missing --") + req);
  SparseAttnConfig cfg;
  cfg.max_kv_cache_size = 0;
  const std::string ref = a.Get("reference", "0.1");
  if (ref == "0.2") {
    cfg.rules = ReferenceRules::k02;
    cfg.chunk_size = 2000;
    cfg.full_attn_threshold = 8000;
    cfg.decode_mode = AttnDecodeMode::kFull;
  } else if (ref != "0.1") {
    return absl::InvalidArgumentError("--reference must be 0.1 or 0.2");
  }
  constexpr long long kMax = 1LL << 30;
  auto geti = [&](const char* n, int* dst, long long lo) -> absl::Status {
    auto v = a.GetInt(n, *dst, lo, kMax);
    if (!v.ok()) return v.status();
    *dst = static_cast<int>(*v);
    return absl::OkStatus();
  };
  if (auto s = geti("moba-chunk-size", &cfg.chunk_size, 1); !s.ok()) return s;
  if (auto s = geti("moba-topk", &cfg.topk, 1); !s.ok()) return s;
  if (auto s = geti("full-attn-threshold", &cfg.full_attn_threshold, 0); !s.ok()) return s;
  if (auto s = geti("max-kv-cache-size", &cfg.max_kv_cache_size, 0); !s.ok()) return s;
  if (auto s = geti("kv-cache-window-size", &cfg.kv_cache_window_size, 0); !s.ok()) return s;
  if (auto s = geti("min-kv-cache-size", &cfg.min_kv_cache_size, 0); !s.ok()) return s;
  if (a.Has("attn-mode")) {
    const std::string m = a.Get("attn-mode");
    if (m == "sparse") cfg.decode_mode = AttnDecodeMode::kSparse;
    else if (m == "full") cfg.decode_mode = AttnDecodeMode::kFull;
    else return absl::InvalidArgumentError("--attn-mode must be sparse or full");
  }
  if (a.Has("prefill-attn-mode")) {
    const std::string m = a.Get("prefill-attn-mode");
    if (m == "chunk") cfg.prefill_mode = AttnPrefillMode::kChunk;
    else if (m == "full") cfg.prefill_mode = AttnPrefillMode::kFull;
    else return absl::InvalidArgumentError("--prefill-attn-mode must be chunk or full");
  }
  if (auto s = cfg.Validate(); !s.ok()) return s;
  auto threads = a.GetInt("threads", 0, 0, 1024);
  if (!threads.ok()) return threads.status();

  // The script.
  std::ifstream sin(a.Get("script"));
  if (!sin) return absl::NotFoundError("cannot open script " + a.Get("script"));
  std::stringstream ss;
  ss << sin.rdbuf();
  nlohmann::json js = nlohmann::json::parse(ss.str(), nullptr, false);
  if (js.is_discarded() || !js.is_object() || !js.contains("calls") || !js["calls"].is_array())
    return absl::InvalidArgumentError(a.Get("script") + ": expected {\"calls\": [...]}");

  auto loaded = LoadModelFile(a.Get("model"));
  if (!loaded.ok()) return loaded.status();
  std::shared_ptr<Model> model = *loaded;
  for (const auto& w : model->warnings) std::fprintf(stderr, "rwkvx replay: warning: %s\n", w.c_str());
  model->attn = cfg;
  const int V = model->shape.vocab;

  std::vector<StepInput> calls;
  for (size_t i = 0; i < js["calls"].size(); ++i) {
    const auto& c = js["calls"][i];
    const std::string where = a.Get("script") + ": call " + std::to_string(i);
    if (!c.is_object() || !c.contains("kind") || !c["kind"].is_string() || !c.contains("tokens") ||
        !c["tokens"].is_array())
      return absl::InvalidArgumentError(where + ": expected {\"kind\": ..., \"tokens\": [...]}");
    const std::string kind = c["kind"].get<std::string>();
    if (kind != "seq" && kind != "one") return absl::InvalidArgumentError(where + ": kind must be seq or one");
    StepInput in;
    for (const auto& t : c["tokens"]) {
      if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= V)
        return absl::InvalidArgumentError(where + ": tokens must be integers in [0, " + std::to_string(V) + ")");
      in.tokens.push_back(static_cast<int32_t>(t.get<long long>()));
    }
    if (in.tokens.empty()) return absl::InvalidArgumentError(where + ": no tokens");
    if (kind == "one" && in.tokens.size() != 1)
      return absl::InvalidArgumentError(where + ": a \"one\" call takes exactly one token");
    calls.push_back(std::move(in));
  }

  CpuBackendOptions opts;
  opts.threads = static_cast<int>(*threads);
  auto backend = MakeCpuBackend(model, opts);
  absl::StatusOr<SessionId> sid = absl::UnknownError("no session");
  if (a.Has("initial-state")) {
    auto st = LoadInitialStateFile(a.Get("initial-state"), model->shape);
    if (!st.ok()) return st.status();
    sid = backend->ImportSession(*st);
  } else {
    sid = backend->CreateSession();
  }
  if (!sid.ok()) return sid.status();
  std::ofstream out(a.Get("out"), std::ios::binary);
  if (!out) return absl::PermissionDeniedError("cannot write " + a.Get("out"));
  std::vector<float> logits;
  for (auto& c : calls) {
    c.session = *sid;
    if (auto s = backend->Step({c}, &logits); !s.ok()) return s;
    out.write(reinterpret_cast<const char*>(logits.data()), logits.size() * sizeof(float));
  }
  out.close();
  if (!out) return absl::DataLossError("failed writing " + a.Get("out"));
  return absl::OkStatus();
}

}  // namespace

int ReplayMain(int argc, char** argv) {
  auto a = CliArgs::Parse(argc, argv,
                          {"model", "script", "out", "moba-chunk-size", "moba-topk", "full-attn-threshold",
                           "max-kv-cache-size", "kv-cache-window-size", "min-kv-cache-size", "attn-mode",
                           "prefill-attn-mode", "reference", "threads", "initial-state", "help"},
                          {"help"});
  if (!a.ok()) {
    std::fprintf(stderr, "rwkvx replay: %s\n\n%s", std::string(a.status().message()).c_str(), kUsage);
    return 2;
  }
  if (a->Has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (auto s = Run(*a); !s.ok()) {
    std::fprintf(stderr, "rwkvx replay: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace rwkvx
