// Tokenizers: the RWKV "world" trie tokenizer (greedy longest match over UTF-8 bytes)
// and a byte tokenizer (id = byte + 1, id 0 = end of text). Immutable after load; every
// const method is safe to call from any thread. StreamDecoder is per-stream, one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string Name() const = 0;  // "world" or "bytes"
  // Encodes arbitrary bytes (invalid UTF-8 is encoded byte by byte, never rejected here;
  // validation of user text happens in the service layer).
  virtual std::vector<int32_t> Encode(std::string_view bytes) const = 0;
  // Concatenated bytes of the tokens; unknown ids (and 0) contribute nothing.
  virtual std::string DecodeBytes(const std::vector<int32_t>& ids) const = 0;
  virtual std::string_view TokenBytes(int32_t id) const = 0;  // "" for unknown ids
  virtual bool IsKnown(int32_t id) const = 0;
  virtual int VocabSize() const = 0;  // ids are in [0, VocabSize())
  int EndOfText() const { return 0; }
};

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadWorldTokenizer(const std::string& vocab_path);
std::unique_ptr<Tokenizer> MakeByteTokenizer();

// Incremental decode for streaming: returns text that is complete UTF-8 and holds back a
// trailing incomplete sequence. Invalid bytes (never completable) are emitted as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer* tok) : tok_(tok) {}
  std::string Push(int32_t id);
  std::string Flush();  // at the end: whatever is held back, invalid parts as U+FFFD
 private:
  const Tokenizer* tok_;
  std::string pending_;
};

// Length of the longest prefix of `s` that is complete, valid UTF-8.
size_t ValidUtf8Prefix(std::string_view s);
bool IsValidUtf8(std::string_view s);

}  // namespace rwkvx
