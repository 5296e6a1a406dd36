// Status-returning checks for CUDA runtime and cuBLAS calls (every call is checked).
// Threads: macros and pure functions; any thread (CUDA calls act on the calling thread's
// current device).
#pragma once

#include "engine/status_macros.h"  // RWKVX_RETURN_IF_ERROR

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#define RWKVX_CUDA_RETURN(expr)                                                              \
  do {                                                                                      \
    const cudaError_t rwkvx_e_ = (expr);                                                    \
    if (rwkvx_e_ != cudaSuccess)                                                            \
      return absl::InternalError(absl::StrCat("CUDA error: ", cudaGetErrorString(rwkvx_e_), \
                                              " (", #expr, ")"));                           \
  } while (0)

#define RWKVX_CUBLAS_RETURN(expr)                                                   \
  do {                                                                             \
    const cublasStatus_t rwkvx_s_ = (expr);                                        \
    if (rwkvx_s_ != CUBLAS_STATUS_SUCCESS)                                         \
      return absl::InternalError(absl::StrCat("cuBLAS error ", static_cast<int>(rwkvx_s_), \
                                              " (", #expr, ")"));                  \
  } while (0)

