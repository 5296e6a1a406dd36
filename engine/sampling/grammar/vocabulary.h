// TokenVocabulary: a tokenizer's tokens as byte strings, arranged as a byte trie for the
// grammar masks (matcher.h), plus the cache of per-rule mask tables shared by every
// grammar used with this vocabulary (token_masks.h).
//
// Built once per tokenizer; immutable afterwards except for the cache, which is
// thread-safe. Share it as shared_ptr<const TokenVocabulary> across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rwkvx {
class Tokenizer;
}

namespace rwkvx::grammar {

class RuleMaskCache;

class TokenVocabulary {
 public:
  // The trie in preorder: a node's subtree is [index + 1, skip). Tokens are the
  // Tokenizer's ids >= 1 with non-empty bytes; id 0 is the end-of-text token, which is
  // allowed exactly when the grammar is complete. Several ids may share one byte string.
  struct TrieNode {
    uint8_t byte = 0;
    uint16_t depth = 0;         // 1 for a token's first byte
    int32_t skip = 0;           // the index after this node's subtree
    uint32_t ids_begin = 0, ids_end = 0;  // into ids(): the tokens ending here
  };

  static std::shared_ptr<const TokenVocabulary> Build(const Tokenizer& tok, size_t cache_bytes = 256u << 20);
  // For tests and tools: token i + 1 has bytes tokens[i] (ids 1..n; id 0 = end of text).
  static std::shared_ptr<const TokenVocabulary> FromTokens(const std::vector<std::string>& tokens,
                                                           size_t cache_bytes = 256u << 20);
  ~TokenVocabulary();

  int vocab_size() const { return static_cast<int>(bytes_.size()); }
  // uint32 words in a mask: bit (id % 32) of word (id / 32) says whether id is allowed.
  int mask_words() const { return (vocab_size() + 31) / 32; }
  std::string_view token_bytes(int32_t id) const {
    return id >= 0 && id < vocab_size() ? std::string_view(bytes_[id]) : std::string_view();
  }
  const std::vector<TrieNode>& trie() const { return trie_; }
  const std::vector<int32_t>& ids() const { return ids_; }
  int max_depth() const { return max_depth_; }
  RuleMaskCache& cache() const { return *cache_; }

 private:
  TokenVocabulary() = default;
  void BuildTrie(size_t cache_bytes);

  std::vector<std::string> bytes_;  // by id
  std::vector<TrieNode> trie_;
  std::vector<int32_t> ids_;
  int max_depth_ = 0;
  std::unique_ptr<RuleMaskCache> cache_;
};

}  // namespace rwkvx::grammar
