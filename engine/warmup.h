// WarmUp: a few throw-away steps run before a server takes requests, so that what a
// backend does on first use (kernels loaded lazily, library heuristics and kernel choices
// per shape, the CUDA graphs of the decode step sizes, pools) happens at start-up instead
// of inside the first requests (on the H200 the first step of a fresh server took ~245 ms).
// Steps: one prefill step of max_rows tokens over up to 4 new sessions, then decode steps
// of 1, 2, 4, ... and max_items sessions; where the backend samples on the device every
// row is sampled (greedy, top-p and top-k rows, so that every sampler pass runs), and one
// more decode step returns logits rows. Sessions are freed afterwards. A backend without
// room for that many sessions is warmed with what fits. Never changes the model's results:
// each session is new and freed.
// Threads: call it from the thread that owns the backend, before anything else uses it.
#pragma once

#include "absl/status/status.h"
#include "engine/backend.h"

namespace rwkvx {

struct WarmUpReport {
  int steps = 0;      // steps run
  int sessions = 0;   // most sessions in one decode step
  double seconds = 0;
};

absl::StatusOr<WarmUpReport> WarmUp(Backend& backend, int max_rows, int max_items);

}  // namespace rwkvx
