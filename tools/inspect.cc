// rwkvx inspect --model M [--values OUT.safetensors]
// Prints a JSON object listing every tensor of a checkpoint (name, dtype, shape). With
// --values, also writes the tensors exactly as read (dense, native dtype) to a
// safetensors file, so tests can compare them bit for bit with torch.
// Runs on the main thread only.
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/checkpoint.h"
#include "nlohmann/json.hpp"
#include "tools/subcommands.h"

namespace rwkvx {

namespace {

void InspectUsage(FILE* f) {
  std::fprintf(f,
               "usage: rwkvx inspect --model PATH [--values OUT.safetensors]\n"
               "  --model PATH     checkpoint (.pth or .safetensors)\n"
               "  --values OUT     also write every tensor (dense, native dtype) to OUT\n"
               "Prints {\"file\", \"tensors\": [{\"name\", \"dtype\", \"shape\"}...]} as JSON.\n");
}

}  // namespace

int InspectMain(int argc, char** argv) {
  std::string model, values;
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
      std::fprintf(stderr, "rwkvx inspect: --shape is not available yet\n");
      return 2;
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
