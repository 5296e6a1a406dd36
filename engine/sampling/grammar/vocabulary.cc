// TokenVocabulary (vocabulary.h): the preorder byte trie of the tokens.
#include "engine/sampling/grammar/vocabulary.h"

#include <algorithm>
#include <numeric>

#include "engine/sampling/grammar/token_masks.h"
#include "engine/tokenizer/tokenizer.h"

namespace rwkvx::grammar {

TokenVocabulary::~TokenVocabulary() = default;

std::shared_ptr<const TokenVocabulary> TokenVocabulary::Build(const Tokenizer& tok, size_t cache_bytes) {
  std::shared_ptr<TokenVocabulary> v(new TokenVocabulary());
  v->bytes_.resize(tok.VocabSize());
  for (int32_t id = 1; id < tok.VocabSize(); ++id) {
    if (tok.IsKnown(id)) v->bytes_[id] = std::string(tok.TokenBytes(id));
  }
  v->BuildTrie(cache_bytes);
  return v;
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::FromTokens(const std::vector<std::string>& tokens,
                                                                   size_t cache_bytes) {
  std::shared_ptr<TokenVocabulary> v(new TokenVocabulary());
  v->bytes_.resize(tokens.size() + 1);
  for (size_t i = 0; i < tokens.size(); ++i) v->bytes_[i + 1] = tokens[i];
  v->BuildTrie(cache_bytes);
  return v;
}

void TokenVocabulary::BuildTrie(size_t cache_bytes) {
  cache_ = std::make_unique<RuleMaskCache>(cache_bytes);
  std::vector<int32_t> order;
  for (int32_t id = 1; id < vocab_size(); ++id) {
    if (!bytes_[id].empty()) order.push_back(id);
  }
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  // Walk the sorted tokens; `path` holds the trie nodes of the previous token's bytes.
  std::vector<int32_t> path;
  std::string_view prev;
  std::vector<std::vector<int32_t>> node_ids;
  for (int32_t id : order) {
    const std::string_view s = bytes_[id];
    size_t common = 0;
    while (common < s.size() && common < prev.size() && s[common] == prev[common]) ++common;
    while (path.size() > common) {  // close the nodes we leave
      trie_[path.back()].skip = static_cast<int32_t>(trie_.size());
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      TrieNode n;
      n.byte = static_cast<uint8_t>(s[d]);
      n.depth = static_cast<uint16_t>(d + 1);
      path.push_back(static_cast<int32_t>(trie_.size()));
      trie_.push_back(n);
      node_ids.emplace_back();
    }
    node_ids[path.back()].push_back(id);
    max_depth_ = std::max<int>(max_depth_, static_cast<int>(s.size()));
    prev = s;
  }
  while (!path.empty()) {
    trie_[path.back()].skip = static_cast<int32_t>(trie_.size());
    path.pop_back();
  }
  for (size_t i = 0; i < trie_.size(); ++i) {
    trie_[i].ids_begin = static_cast<uint32_t>(ids_.size());
    ids_.insert(ids_.end(), node_ids[i].begin(), node_ids[i].end());
    trie_[i].ids_end = static_cast<uint32_t>(ids_.size());
  }
}

}  // namespace rwkvx::grammar
