// OpenBLAS kernel selection. OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than it
// (e.g. Emerald Rapids) and falls back to its SSE3 "Prescott" kernels, ~3x slower. When
// that happened on a CPU with AVX2+FMA and the user did not choose (OPENBLAS_CORETYPE
// unset, RWKVX_KEEP_BLAS_CORE unset), MaybeReexecWithFasterBlas re-executes the program
// with OPENBLAS_CORETYPE=Haswell (AVX2 kernels, valid on every AVX2 CPU).
// Call it first thing in main(), before any thread starts.
#pragma once

#include <string>

namespace rwkvx::cpu {

void MaybeReexecWithFasterBlas(char** argv);
std::string BlasCoreName();

}  // namespace rwkvx::cpu
