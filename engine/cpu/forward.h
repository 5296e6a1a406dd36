// The CPU reference forward pass, split by block kind. A step's tokens from all sessions
// are stacked into one row-major activation matrix X [Ntot, C]; each session owns a
// contiguous range of rows (a SeqSlice). Linear layers run over all rows at once; the
// recurrences and attention run per session. Called by CpuBackend on its one caller
// thread; uses ParallelFor internally.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/cpu_session.h"

namespace rwkvx::cpu {

struct SeqSlice {
  CpuSession* state;
  int64_t row0;  // first row in X
  int64_t T;     // tokens (T == 1: decode path; T > 1: prefill path)
};

// The LoRA factors of one RWKV block transposed to the Linear layout [out, in], built once
// per model by the backend (the checkpoint stores them as [in, out]).
struct RwkvLoraT {
  std::vector<float> w1, w2, a1, a2, v1, v2, g1, g2;
};
RwkvLoraT TransposeLora(const RwkvBlockWeights& w, const ModelShape& s);

// fp16 copies of a block's large matrices (Wr/Wq, Wk, Wv, Wo, ffn key, ffn value) for the
// half-precision weight option; all empty when the backend keeps float32 weights.
struct HalfMats {
  std::vector<uint16_t> r, k, v, o, key, value;
};
HalfMats ToHalf(const RwkvBlockWeights& w);
HalfMats ToHalf(const AttnBlockWeights& w);
std::vector<uint16_t> ToHalf(const std::vector<float>& v);
inline WeightRef Pick(const std::vector<uint16_t>& h, const std::vector<float>& f) {
  return h.empty() ? WeightRef(f.data()) : WeightRef(h.data());
}

// x <- x + RWKV-7 block `layer`. v_first [Ntot, C] is written by layer 0 and read after.
void RwkvBlockForward(const Model& m, const RwkvLoraT& lora, const HalfMats& half, int layer,
                      const std::vector<SeqSlice>& seqs, float* X, float* v_first, int64_t ntot);

// x <- x + sparse-attention block `j` (attention paths, KV append, compression).
void AttnBlockForward(const Model& m, const HalfMats& half, int j, const std::vector<SeqSlice>& seqs, float* X,
                      int64_t ntot);

// x <- x + channel mix (ln2, token shift with ffn_prev, relu^2 MLP). `prev[s]` is session s's
// ffn_prev [C], updated in place.
void ChannelMixForward(const float* ln_w, const float* ln_b, const float* x_k, WeightRef key,
                       WeightRef value, int64_t C, int64_t F, const std::vector<SeqSlice>& seqs,
                       const std::vector<float*>& prev, float* X, int64_t ntot);

// Token shift: out[r] = u[r] + (prev_r - u[r]) * mix, where prev_r is the previous row of
// the same session, or `*prev` for its first row; then *prev <- last row of u.
void TokenShiftMix(const float* u, const float* prev, const float* mix, float* out, int64_t T, int64_t C);

}  // namespace rwkvx::cpu
