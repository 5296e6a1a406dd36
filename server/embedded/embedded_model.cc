#include "server/embedded/embedded_model.h"

#include "absl/strings/str_cat.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/model_config.h"

// The files are pulled in with the assembler's .incbin (paths from CMake). CMake re-runs
// its configure step when they change and passes their hash, so ccache never serves a
// stale object.
#ifndef RWKVX_EMBEDDED_PTH
#error "RWKVX_EMBEDDED_PTH must name the .pth file to embed"
#endif

#define RWKVX_INCBIN(sym, file)                                        \
  __asm__(".section .rodata\n"                                         \
          ".global " #sym "_begin\n"                                   \
          ".balign 64\n" #sym "_begin:\n"                              \
          ".incbin \"" file "\"\n"                                     \
          ".global " #sym "_end\n" #sym "_end:\n"                      \
          ".byte 0\n"                                                  \
          ".previous\n")

RWKVX_INCBIN(rwkvx_embedded_pth, RWKVX_EMBEDDED_PTH);
RWKVX_INCBIN(rwkvx_embedded_json, RWKVX_EMBEDDED_JSON);

extern "C" {
extern const char rwkvx_embedded_pth_begin[];
extern const char rwkvx_embedded_pth_end[];
extern const char rwkvx_embedded_json_begin[];
extern const char rwkvx_embedded_json_end[];
}

namespace rwkvx {

// Content hash of the embedded files, recorded for `ldd`-free inspection (strings).
[[maybe_unused]] static const char kEmbeddedHash[] = "rwkvx-embedded-sha256:" RWKVX_EMBEDDED_SHA256;

std::string_view EmbeddedModelPth() {
  return std::string_view(rwkvx_embedded_pth_begin,
                          static_cast<size_t>(rwkvx_embedded_pth_end - rwkvx_embedded_pth_begin));
}

std::string_view EmbeddedModelConfig() {
  return std::string_view(rwkvx_embedded_json_begin,
                          static_cast<size_t>(rwkvx_embedded_json_end - rwkvx_embedded_json_begin));
}

absl::StatusOr<std::shared_ptr<Model>> LoadEmbeddedModel() {
  auto tensors = ReadPthBytes(EmbeddedModelPth(), "embedded model");
  if (!tensors.ok()) return tensors.status();
  auto model = BuildModel(*tensors, kEmbeddedModelName);
  if (!model.ok()) return model.status();
  (*model)->source = "embedded";
  if (auto st = ApplySparseAttnJson(std::string(EmbeddedModelConfig()), &(*model)->attn); !st.ok())
    return absl::InternalError(absl::StrCat("embedded model config: ", st.message()));
  return model;
}

}  // namespace rwkvx
