// The one RETURN_IF_ERROR of the project: returns the absl::Status of `expr` from the
// enclosing function when it is not OK. Works in functions returning absl::Status or
// absl::StatusOr<T>. Header-only, no state; any thread.
#pragma once

#include "absl/status/status.h"

#define RWKVX_RETURN_IF_ERROR(expr)                           \
  do {                                                        \
    ::absl::Status rwkvx_status_ = (expr);                    \
    if (!rwkvx_status_.ok()) return rwkvx_status_;            \
  } while (0)
