#include "engine/initial_state.h"

#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/checkpoint/checkpoint.h"

namespace rwkvx {
namespace {

// The block index of `blocks.{i}.att.time_state` (optionally `rwkv.`-prefixed), or -1.
int TimeStateBlock(absl::string_view key) {
  absl::ConsumePrefix(&key, "rwkv.");
  if (!absl::ConsumePrefix(&key, "blocks.") || !absl::ConsumeSuffix(&key, ".att.time_state")) return -1;
  int i = -1;
  if (key.empty() || key.size() > 6 || !absl::SimpleAtoi(key, &i) || i < 0) return -1;
  return i;
}

std::string ShapeText(const std::vector<int64_t>& s) { return "[" + absl::StrJoin(s, ", ") + "]"; }

}  // namespace

absl::StatusOr<SessionState> InitialStateFromTensors(const TensorMap& tensors, const ModelShape& shape,
                                                     const std::string& name) {
  const int R = shape.n_rwkv_layer, H = shape.n_head, N = shape.head_size;
  SessionState st = SessionState::Zero(shape);
  std::set<int> seen;
  for (const auto& [key, t] : tensors) {
    const int i = TimeStateBlock(key);
    if (i < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": '", key, "' is not an initial-state tensor (expected only blocks.{i}.att.time_state, [H, N, N])"));
    if (i >= R)
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": '", key, "' names block ", i, " but the model has ", R, " RWKV blocks"));
    if (!seen.insert(i).second)
      return absl::InvalidArgumentError(absl::StrCat(name, ": block ", i, " has two time_state tensors"));
    const std::vector<int64_t> want = {H, N, N};
    if (t.shape != want)
      return absl::InvalidArgumentError(absl::StrCat(name, ": '", key, "' has shape ", ShapeText(t.shape),
                                                     ", the model needs ", ShapeText(want)));
    std::vector<float> v = t.ToFloat();
    for (float x : v)
      if (!std::isfinite(x))
        return absl::InvalidArgumentError(absl::StrCat(name, ": '", key, "' holds a non-finite value"));
    st.rwkv[i].wkv = std::move(v);
  }
  for (int i = 0; i < R; ++i)
    if (!seen.count(i))
      return absl::InvalidArgumentError(absl::StrCat(name, ": no blocks.", i, ".att.time_state (the file covers ",
                                                     seen.size(), " of the model's ", R, " RWKV blocks)"));
  return st;
}

absl::StatusOr<SessionState> LoadInitialStateFile(const std::string& path, const ModelShape& shape) {
  auto t = ReadCheckpointFile(path);
  if (!t.ok()) return t.status();
  return InitialStateFromTensors(*t, shape, path);
}

}  // namespace rwkvx
