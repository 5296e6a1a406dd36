// Shared helpers of the CUDA tests: every test skips, with the reason, where no GPU is usable.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/backend.h"

#define SKIP_WITHOUT_GPU()                                                      \
  do {                                                                          \
    if (const std::string why = ::rwkvx::CudaUnavailableReason(); !why.empty()) \
      GTEST_SKIP() << "CUDA tests need a usable GPU: " << why;                  \
  } while (0)
