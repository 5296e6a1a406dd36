// rwkvx inspect --model M [--values OUT.safetensors] [--shape]
// Prints a JSON object listing every tensor of a checkpoint (name, dtype, shape). With
// --values, also writes the tensors exactly as read (dense, native dtype) to a
// safetensors file, so tests can compare them bit for bit with torch. With --shape,
// prints the model shape BuildModel infers instead of the tensor list.
// Runs on the main thread only.
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/checkpoint/checkpoint.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"
#include "tools/subcommands.h"

namespace rwkvx {

namespace {

void InspectUsage(FILE* f) {
  std::fprintf(f,
               "usage: rwkvx inspect --model PATH [--values OUT.safetensors] [--shape]\n"
               "  --model PATH     checkpoint (.pth or .safetensors)\n"
               "  --values OUT     also write every tensor (dense, native dtype) to OUT\n"
               "  --shape          print the inferred model shape (BuildModel) instead\n"
               "Prints {\"file\", \"tensors\": [{\"name\", \"dtype\", \"shape\"}...]} as JSON.\n");
}

int PrintShape(const TensorMap& tensors, const std::string& path) {
  auto m = BuildModel(tensors, path);
  if (!m.ok()) {
    std::fprintf(stderr, "rwkvx inspect: %s: %s\n", path.c_str(), std::string(m.status().ToString()).c_str());
    return 1;
  }
  const ModelShape& s = (*m)->shape;
  const nlohmann::json j = {
      {"file", path}, {"vocab", s.vocab}, {"n_embd", s.n_embd}, {"head_size", s.head_size},
      {"n_head", s.n_head}, {"n_rwkv_layer", s.n_rwkv_layer}, {"n_attn_layer", s.n_attn_layer},
      {"ffn_dim", s.ffn_dim}, {"rank_w", s.rank_w}, {"rank_a", s.rank_a}, {"rank_v", s.rank_v},
      {"rank_g", s.rank_g}, {"warnings", (*m)->warnings}};
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace

int InspectMain(int argc, char** argv) {
  std::string model, values;
  bool shape = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      InspectUsage(stdout);
      return 0;
    } else if (a == "--model") {
      if (!next(&model)) { InspectUsage(stderr); return 2; }
    } else if (a.rfind("--model=", 0) == 0) {
      model = a.substr(8);
    } else if (a == "--values") {
      if (!next(&values)) { InspectUsage(stderr); return 2; }
    } else if (a.rfind("--values=", 0) == 0) {
      values = a.substr(9);
    } else if (a == "--shape") {
      shape = true;
    } else {
      std::fprintf(stderr, "rwkvx inspect: unknown flag '%s'\n", a.c_str());
      InspectUsage(stderr);
      return 2;
    }
  }
  if (model.empty()) {
    InspectUsage(stderr);
    return 2;
  }
  auto tensors = ReadCheckpointFile(model);
  if (!tensors.ok()) {
    std::fprintf(stderr, "rwkvx inspect: %s\n", std::string(tensors.status().ToString()).c_str());
    return 1;
  }
  if (shape) return PrintShape(*tensors, model);
  // One tensor per line: readable by people, parseable as JSON.
  auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  int64_t total = 0;
  for (const auto& [name, t] : *tensors) total += t.numel();
  std::printf("{\n  \"file\": %s,\n  \"num_tensors\": %zu,\n  \"num_elements\": %lld,\n  \"tensors\": [",
              dump(nlohmann::json(model)).c_str(), tensors->size(), static_cast<long long>(total));
  bool first = true;
  for (const auto& [name, t] : *tensors) {
    const nlohmann::json row = {{"name", name}, {"dtype", DTypeName(t.dtype)}, {"shape", t.shape}};
    std::printf("%s\n    %s", first ? "" : ",", dump(row).c_str());
    first = false;
  }
  std::printf("\n  ]\n}\n");
  if (!values.empty()) {
    if (auto s = WriteSafetensorsFile(values, *tensors); !s.ok()) {
      std::fprintf(stderr, "rwkvx inspect: %s\n", std::string(s.ToString()).c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace rwkvx
