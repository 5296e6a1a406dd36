// Names the calling thread as `top -H`, `ps -T`, perf and gdb show it (Linux: at most 15
// characters, longer names are cut). Best effort: does nothing where it is not supported.
// Threads: call from the thread being named.
#pragma once

#include <string>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace rwkvx {

inline void NameThisThread(const std::string& name) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
#else
  (void)name;
#endif
}

}  // namespace rwkvx
