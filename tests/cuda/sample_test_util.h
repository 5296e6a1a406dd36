// The host reference the GPU sampling tests compare with: a row of logits with its
// adjustments, mask and draw, sampled by Sampler::SampleAdjusted as a backend's host path
// would (sample_test.cc, sample_step_test.cc). Test code only.
#pragma once

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/sampling/sampler.h"

namespace rwkvx {

inline constexpr float kInf = std::numeric_limits<float>::infinity();

struct SampleCase {
  std::vector<float> logits;
  SamplingParams p;
  std::vector<std::pair<int32_t, float>> adjust;
  std::vector<uint32_t> allowed;  // DeviceSampling::allowed (empty: no mask)
  double u = 0;
};

// Host reference: the adjustments as a backend applies them, then Sampler::SampleAdjusted.
inline SampleResult HostSample(SampleCase c) {
  ApplyDeviceAdjustments(c.adjust, c.logits.data(), static_cast<int>(c.logits.size()), &c.allowed);
  Sampler s(c.p, nullptr);
  return s.SampleAdjusted(c.logits.data(), static_cast<int>(c.logits.size()), c.u);
}

}  // namespace rwkvx
