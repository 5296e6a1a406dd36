// CUDA graphs of pure decode steps (no prefill item, no compression): the forward of such a
// step is captured once per GraphKey and replayed after (CudaBackend::ForwardOrReplay,
// step_forward.cc). A graph holds the pointers it was captured with (workspace, metadata
// block, weights), so the backend clears them whenever one of those buffers moves.
//
// Ownership: DecodeGraphs owns its instantiated graphs (destroyed by Clear or the
// destructor). Not thread-safe: the backend's caller thread only.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <tuple>

#include "absl/status/status.h"

namespace rwkvx::cuda {

// What a replayed graph must match: items (= rows), logit rows, attn_decode splits, the
// chunk cap that chunk selection was captured with (0 when no item is sparse), sparse.
struct GraphKey {
  int items, logit_rows, splits, chunk_cap, sparse;
  bool operator<(const GraphKey& o) const {
    return std::tie(items, logit_rows, splits, chunk_cap, sparse) <
           std::tie(o.items, o.logit_rows, o.splits, o.chunk_cap, o.sparse);
  }
};

class DecodeGraphs {
 public:
  DecodeGraphs() = default;
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;
  ~DecodeGraphs() { Clear(); }

  // Launches the graph of `key` on `stream`; when there is none yet, first captures what
  // `forward` issues on `stream` into a new one (forward's error is returned as it is).
  absl::Status Launch(const GraphKey& key, cudaStream_t stream, const std::function<absl::Status()>& forward);
  void Clear();
  int size() const { return static_cast<int>(graphs_.size()); }

 private:
  std::map<GraphKey, cudaGraphExec_t> graphs_;
};

}  // namespace rwkvx::cuda
