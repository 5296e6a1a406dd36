// bench_engine's command line: the flags (kUsage), their values (Args) and the CUDA
// backend's options they give. Header-only, included by bench_engine.cc alone.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace rwkvx {
namespace {

// "1K,8K,1M" -> 1024, 8192, 1048576.
std::vector<int> Ints(const char* s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) {
    if (t.empty()) continue;
    double x = std::atof(t.c_str());
    x *= (t.back() == 'K' || t.back() == 'k') ? 1024 : (t.back() == 'M' || t.back() == 'm') ? 1024 * 1024 : 1;
    v.push_back(static_cast<int>(x));
  }
  return v;
}

constexpr const char* kUsage =
    "usage: bench_engine [--shape 0.2b|3.6b|tiny] [--decode-ctx 1K,8K,...] [--prefill 1K,4K,...]\n"
    "                    [--batch 1,16,...] [--batch-ctx 1K,8K] [--mem-ctx 8K,...] [--steps 32]\n"
    "                    [--fill-chunk 16384] [--cuda-graphs 1|0] [--pdl 1|0] [--wkv-chunked 1|0] [--hbm-tbps F]\n"
    "                    [--weights fp16|bf16|fp8|int8] [--json out.json]\n"
    "  --cuda-graphs 0   run decode steps eagerly instead of replaying CUDA graphs\n"
    "                    (CudaBackendOptions::cuda_graphs; e.g. to see each kernel in a profiler)\n"
    "  --pdl 1|0         programmatic dependent launch of the step's kernels (CudaBackendOptions::pdl)\n"
    "  --wkv-chunked 0   always the sequential wkv7 kernel (CudaBackendOptions::wkv_chunked)\n"
    "  --fused-decode 0  decode steps run prep, wkv7 and post as three kernels (CudaBackendOptions::fused_decode)\n"
    "  --weights fp16|bf16|fp8|int8  weight precision of the CUDA backend (default fp16; 8-bit: docs/CUDA.md)\n"
    "  --fused-append 0  decode steps append keys and values with kv_append, not inside the attention\n"
    "                    kernel (CudaBackendOptions::fused_kv_append)\n"
    "  --fused-select -1|0|1  sparse decode items choose their chunks inside the attention kernel:\n"
    "                    -1 auto (steps of <= 4 sessions), 0 never, 1 always (CudaBackendOptions::fused_chunk_select)\n"
    "  --fused-norm-shift 0  steps with prompts run LayerNorm and the token-shift mixes as two launches\n"
    "                    (CudaBackendOptions::fused_norm_shift)\n"
    "  --pinned-logits-mb N  logits for the host go through a pinned buffer up to N MiB a step\n"
    "                    (-1 auto: 16; 0 never: straight into the pageable vector; CudaBackendOptions::pinned_logits_bytes)\n"
    "  --decode-prefetch 1  the fused decode kernel loads the post's inputs early (CudaBackendOptions::decode_prefetch)\n"
    "  --skinny-mma 0      cuBLAS for steps of 5..32 rows instead of the tensor-core skinny kernel\n"
    "                    (CudaBackendOptions::skinny_mma, default 1)\n"
    "  --batch-invariant 1 fixed-order kernels for every row count (CudaBackendOptions::batch_invariant)\n"
    "  --fold-ln 1         decode steps of <= 4 sessions fold each LayerNorm into the next GEMV group\n"
    "                    (CudaBackendOptions::fold_layernorm, default 0)\n"
    "  --wkv-chunked-min N  rows from which an item takes the chunked wkv7 (wkv_chunked_min_len)\n"
    "  --wkv-rows 1|2|4    state rows a thread of the sequential wkv7 kernel and the chunked token pass\n"
    "                    (CudaBackendOptions::wkv_rows, default 2)\n"
    "  --wkv-matrix 0|1    the chunked wkv7's first pass as tensor-core matrix products\n"
    "                    (CudaBackendOptions::wkv_matrix)\n"
    "  --gemv-prefetch -1|0|1  the GEMV asks L2 for its weights before its PDL wait\n"
    "                    (CudaBackendOptions::gemv_prefetch; -1, the default: on for hidden sizes <= 1024)\n"
    "  --gemv-split -1|0|1|2|4  warps summing each GEMV output row (CudaBackendOptions::gemv_split;\n"
    "                    -1, the default: the fewest keeping <= 4 weight loads a lane, hidden sizes <= 1024; 0: one)\n"
    "  --early-reads -1|0|1  decode kernels of PDL steps read what the kernel before does not write before\n"
    "                    their PDL wait (CudaBackendOptions::early_reads; -1, the default: on for hidden sizes <= 1024)\n"
    "  --attn-blocks-per-sm N  blocks per SM the decode attention's key slices aim at (1..16, default 2;\n"
    "                    CudaBackendOptions::attn_blocks_per_sm)\n"
    "  --sample-splits N  blocks the GPU sampler splits a row over (CudaBackendOptions::sample_splits;\n"
    "                    0 = chosen from the batch and the card)\n"
    "  --sample-top-p P  top-p of the sampled passes (default 0.9; 1: the server's default request,\n"
    "                    temperature 1 and no top-p, which skips the radix rounds)\n"
    "  --sample-penalties N  penalised tokens a session in the batched table's sampled pass (default 32)\n"
    "  --hbm-tbps F      memory bandwidth (TB/s) for the batched table's floor column; default: the\n"
    "                    card's own peak (memory clock x bus width x 2, queried; printed)\n"
    "  Environment: RWKVX_PROFILE_PREFILL=T / RWKVX_PROFILE_DECODE=ctx profile one step and exit;\n"
    "  RWKVX_PROFILE_BATCH=B with it: B sessions, sampled on the GPU; RWKVX_PROFILE_MIXED=D,P,T:\n"
    "  a mixed step (D decoding sessions + P new T-token prompts, all sampled), timed and profiled.\n";

struct Args {
  std::string shape = "0.2b";
  std::vector<int> decode_ctx = Ints("1K,8K,32K,64K,128K");
  std::vector<int> prefill = Ints("1K,4K,16K,64K");
  std::vector<int> batch = Ints("1,16,64,256,1024");
  std::vector<int> batch_ctx = Ints("1K,8K");
  std::vector<int> mem_ctx = Ints("8K,20000,128K");
  int steps = 32;
  int fill_chunk = 16384;
  bool cuda_graphs = true;
  int pdl = -1;  // -1: the backend's default
  bool wkv_chunked = true, fused_decode = true, fused_append = true, decode_prefetch = false, skinny_mma = true, batch_invariant = false, fold_ln = false;
  int wkv_chunked_min = -1;  // -1: the backend's default
  int wkv_rows = -1;  // -1: the backend's default
  int wkv_matrix = -1;  // -1: the backend's default
  int sample_splits = 0;  // 0: auto
  int pinned_logits_mb = -1;  // --pinned-logits-mb (-1 auto)
  bool fused_norm_shift = true;  // --fused-norm-shift
  int gemv_prefetch = -1;  // --gemv-prefetch (-1 auto)
  int early_reads = -1;    // --early-reads (-1 auto)
  int gemv_split = -1;     // --gemv-split (-1 auto, 0 off)
  int fused_select = -1;   // --fused-select (-1 auto, 0 never, 1 always)
  int attn_blocks_per_sm = 2;  // --attn-blocks-per-sm
  double sample_top_p = 0.9;  // --sample-top-p
  int sample_penalties = 32;  // --sample-penalties
  std::string weights = "fp16";  // --weights
  double hbm_tbps = 0;  // 0: the card's peak, queried
  std::string json;
};

// -1 to go on, else the exit code (--help: 0; an unknown flag: 2).
int ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--shape") a->shape = v;
    else if (k == "--decode-ctx") a->decode_ctx = Ints(v);
    else if (k == "--prefill") a->prefill = Ints(v);
    else if (k == "--batch") a->batch = Ints(v);
    else if (k == "--batch-ctx") a->batch_ctx = Ints(v);
    else if (k == "--mem-ctx") a->mem_ctx = Ints(v);
    else if (k == "--steps") a->steps = std::atoi(v);
    else if (k == "--fill-chunk") a->fill_chunk = std::atoi(v);
    else if (k == "--cuda-graphs") a->cuda_graphs = std::atoi(v) != 0;
    else if (k == "--pdl") a->pdl = std::atoi(v) != 0;
    else if (k == "--wkv-chunked") a->wkv_chunked = std::atoi(v) != 0;
    else if (k == "--fused-decode") a->fused_decode = std::atoi(v) != 0;
    else if (k == "--decode-prefetch") a->decode_prefetch = std::atoi(v) != 0;
    else if (k == "--fused-append") a->fused_append = std::atoi(v) != 0;
    else if (k == "--fused-select") a->fused_select = std::atoi(v);
    else if (k == "--pinned-logits-mb") a->pinned_logits_mb = std::atoi(v);
    else if (k == "--fused-norm-shift") a->fused_norm_shift = std::atoi(v) != 0;
    else if (k == "--skinny-mma") a->skinny_mma = std::atoi(v) != 0;
    else if (k == "--batch-invariant") a->batch_invariant = std::atoi(v) != 0;
    else if (k == "--fold-ln") a->fold_ln = std::atoi(v) != 0;
    else if (k == "--gemv-prefetch" && std::atoi(v) >= -1 && std::atoi(v) <= 1) a->gemv_prefetch = std::atoi(v);
    else if (k == "--gemv-split" && (!std::strcmp(v, "-1") || !std::strcmp(v, "0") || !std::strcmp(v, "1") ||
                                      !std::strcmp(v, "2") || !std::strcmp(v, "4")))
      a->gemv_split = std::atoi(v);
    else if (k == "--early-reads" && std::atoi(v) >= -1 && std::atoi(v) <= 1) a->early_reads = std::atoi(v);
    else if (k == "--weights" && (!std::strcmp(v, "fp16") || !std::strcmp(v, "bf16") || !std::strcmp(v, "fp8") ||
                                      !std::strcmp(v, "int8")))
      a->weights = v;
    else if (k == "--wkv-chunked-min") a->wkv_chunked_min = std::atoi(v);
    else if (k == "--wkv-rows") a->wkv_rows = std::atoi(v);
    else if (k == "--wkv-matrix") a->wkv_matrix = std::atoi(v);
    else if (k == "--attn-blocks-per-sm" && std::atoi(v) >= 1 && std::atoi(v) <= 16) a->attn_blocks_per_sm = std::atoi(v);
    else if (k == "--sample-splits") a->sample_splits = std::atoi(v);
    else if (k == "--sample-top-p" && std::atof(v) > 0 && std::atof(v) <= 1) a->sample_top_p = std::atof(v);
    else if (k == "--sample-penalties" && std::atoi(v) >= 0) a->sample_penalties = std::atoi(v);
    else if (k == "--hbm-tbps") a->hbm_tbps = std::atof(v);
    else if (k == "--json") a->json = v;
    else { std::fprintf(stderr, "unknown flag or bad value: %s %s\n%s", k.c_str(), v, kUsage); return 2; }
  }
  return -1;
}

CudaBackendOptions OptionsOf(const Args& a) {
  CudaBackendOptions o;
  o.gpu_memory_fraction = 0.92;
  o.cuda_graphs = a.cuda_graphs;
  if (a.pdl >= 0) o.pdl = a.pdl != 0;
  o.wkv_chunked = a.wkv_chunked, o.fused_decode = a.fused_decode, o.bf16 = a.weights == "bf16", o.fp8_weights = a.weights == "fp8";
  o.int8_weights = a.weights == "int8";
  o.decode_prefetch = a.decode_prefetch;
  o.fused_kv_append = a.fused_append;
  o.fused_chunk_select = a.fused_select;
  o.skinny_mma = a.skinny_mma;
  o.batch_invariant = a.batch_invariant;
  o.fold_layernorm = a.fold_ln;
  if (a.wkv_chunked_min >= 1) o.wkv_chunked_min_len = a.wkv_chunked_min;
  if (a.wkv_rows > 0) o.wkv_rows = a.wkv_rows;
  if (a.wkv_matrix >= 0) o.wkv_matrix = a.wkv_matrix != 0;
  o.sample_splits = a.sample_splits;
  o.fused_norm_shift = a.fused_norm_shift;
  o.pinned_logits_bytes = a.pinned_logits_mb < 0 ? -1 : static_cast<long long>(a.pinned_logits_mb) << 20;
  o.gemv_prefetch = a.gemv_prefetch;
  o.early_reads = a.early_reads;
  o.gemv_split = a.gemv_split;
  o.attn_blocks_per_sm = a.attn_blocks_per_sm;
  return o;
}

}  // namespace
}  // namespace rwkvx
