#include "engine/cpu/blas_setup.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace rwkvx::cpu {

std::string BlasCoreName() {
  const char* n = openblas_get_corename();
  return n ? n : "unknown";
}

void MaybeReexecWithFasterBlas(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("RWKVX_KEEP_BLAS_CORE")) return;
  const std::string core = BlasCoreName();
  if (strcasecmp(core.c_str(), "prescott") != 0) return;
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  setenv("RWKVX_KEEP_BLAS_CORE", "1", 1);  // never loop
  execv("/proc/self/exe", argv);
  // execv failed: carry on with the slow kernels.
}

}  // namespace rwkvx::cpu
