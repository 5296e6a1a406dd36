// Where unit tests find the RWKV world vocabulary: $RWKVX_VOCAB, else the shared data
// folder next to the source tree (tests skip when the file is absent). Any thread.
#pragma once

#include <cstdlib>
#include <string>

namespace rwkvx {

inline std::string TestWorldVocabPath() {
  if (const char* v = std::getenv("RWKVX_VOCAB")) return v;
#ifdef RWKVX_SOURCE_DIR
  return std::string(RWKVX_SOURCE_DIR) + "/../shared/data/rwkv_vocab_v20230424.txt";
#else
  return "../shared/data/rwkv_vocab_v20230424.txt";
#endif
}

}  // namespace rwkvx
