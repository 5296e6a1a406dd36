// The step's forward: eager, or for pure decode steps a CUDA graph per GraphKey, captured
// the first time and replayed after.
#include "engine/cuda/step_forward.h"

#include <algorithm>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/launch.cuh"

namespace rwkvx::cuda {

void DecodeGraphs::Clear() {
  for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
}

absl::Status DecodeGraphs::Launch(const GraphKey& key, cudaStream_t stream,
                                  const std::function<absl::Status()>& forward) {
  auto g = graphs_.find(key);
  if (g == graphs_.end()) {
    RWKVX_CUDA_RETURN(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    absl::Status fs = forward();
    cudaGraph_t graph = nullptr;
    const cudaError_t ce = cudaStreamEndCapture(stream, &graph);
    if (!fs.ok()) {
      if (graph) cudaGraphDestroy(graph);
      return fs;
    }
    RWKVX_CUDA_RETURN(ce);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    RWKVX_CUDA_RETURN(ie);
    g = graphs_.emplace(key, exec).first;
  }
  RWKVX_CUDA_RETURN(cudaGraphLaunch(g->second, stream));
  return absl::OkStatus();
}

absl::Status CudaBackend::ForwardOrReplay(const StepPlan& plan) {
  // PDL where it was measured to help: steps of few sessions (the GEMV path, many short
  // kernels); a graph captured with it keeps it (graphs are keyed by the item count).
  kernels::SetPdl(pdl_ok_ && plan.items <= kPdlMaxItems);
  const int Bc = model_->attn.chunk_size;
  const int nl = static_cast<int>(plan.logit_rows.size());
  bool any_compress = false;
  int max_chunks = 0;
  bool any_sparse = false;
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < plan.items; ++b) {
      any_compress |= plan.attn[j][b].compress;
      if (plan.attn_items[j][b].sparse) {
        any_sparse = true;
        max_chunks = std::max(max_chunks, plan.attn_items[j][b].ct / Bc);
      }
    }
  if (!opts_.cuda_graphs || plan.any_prefill || any_compress) return Forward(plan.rows, plan.items, nl);
  // A graph's chunk selection runs over a fixed chunk cap (a power of two >= 16), so that
  // one graph serves every later step whose sessions have at most that many chunks.
  int cap = 16;
  while (cap < max_chunks) cap *= 2;
  const GraphKey key{plan.items, nl, plan.decode_splits, any_sparse ? cap : 0, any_sparse ? 1 : 0};
  return graphs_.Launch(key, stream_, [&] {
    graph_mode_ = true;
    graph_sparse_ = any_sparse;
    graph_chunk_cap_ = any_sparse ? cap : 0;
    absl::Status fs = Forward(plan.rows, plan.items, nl);
    graph_mode_ = false;
    return fs;
  });
}

}  // namespace rwkvx::cuda
