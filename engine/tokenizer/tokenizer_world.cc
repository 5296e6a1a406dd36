// The RWKV "world" tokenizer: greedy longest match over bytes with a flat byte trie.
// Immutable after LoadWorldTokenizer returns; all methods are const and thread-safe.
//
// Trie layout (built once, then only read): nodes are numbered in BFS order; node n has
// a token (-1 if no vocabulary entry ends there) and its children in the edge arrays
// [first, first + count) sorted by label. The root's children are also in a dense
// 256-entry table, and so are the children of every node with many children (dense >= 0
// indexes a 256-entry block of dense_child_), so the hot first bytes cost one load each.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_vocab.h"

namespace rwkvx {
namespace {

constexpr int kDenseThreshold = 12;  // nodes with at least this many children get a table

class WorldTokenizer final : public Tokenizer {
 public:
  absl::Status Build(std::vector<VocabEntry> entries);

  std::string Name() const override { return "world"; }
  std::vector<int32_t> Encode(std::string_view bytes) const override;
  std::string DecodeBytes(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) out.append(TokenBytes(id));
    return out;
  }
  std::string_view TokenBytes(int32_t id) const override {
    if (!IsKnown(id)) return {};
    return std::string_view(bytes_).substr(offset_[id], offset_[id + 1] - offset_[id]);
  }
  bool IsKnown(int32_t id) const override {
    return id > 0 && id < vocab_size_ && offset_[id + 1] > offset_[id];
  }
  int VocabSize() const override { return vocab_size_; }

 private:
  int32_t Child(int32_t node, unsigned char c) const {
    const Node& n = nodes_[node];
    if (n.dense >= 0) return dense_child_[static_cast<size_t>(n.dense) * 256 + c];
    const uint32_t b = n.first, e = b + n.count;
    for (uint32_t i = b; i < e; ++i) {  // few children: a short scan beats a search
      const unsigned char l = label_[i];
      if (l == c) return child_[i];
      if (l > c) break;
    }
    return -1;
  }

  int vocab_size_ = 0;
  std::string bytes_;             // all token bytes, concatenated in id order
  std::vector<uint32_t> offset_;  // [vocab_size_ + 1]; token id spans [offset_[id], offset_[id+1])
  // Trie, indexed by node (one 16-byte record: one cache line holds four nodes).
  struct Node {
    int32_t token = -1;  // vocabulary entry ending here, -1 if none
    uint32_t first = 0;  // first edge
    int32_t dense = -1;  // block of dense_child_, -1 if none
    uint32_t count = 0;  // number of edges
  };
  std::vector<Node> nodes_;
  // Edges, indexed by Node::first + k:
  std::vector<unsigned char> label_;
  std::vector<int32_t> child_;
  std::vector<int32_t> dense_child_;  // [num_dense * 256], -1 = no child
};

absl::Status WorldTokenizer::Build(std::vector<VocabEntry> entries) {
  int32_t max_id = 0;
  for (const auto& e : entries) max_id = std::max(max_id, e.id);
  vocab_size_ = max_id + 1;
  std::vector<const std::string*> by_id(vocab_size_, nullptr);
  for (const auto& e : entries) by_id[e.id] = &e.bytes;
  offset_.assign(vocab_size_ + 1, 0);
  for (int32_t id = 0; id < vocab_size_; ++id) {
    offset_[id] = static_cast<uint32_t>(bytes_.size());
    if (by_id[id]) bytes_.append(*by_id[id]);
  }
  offset_[vocab_size_] = static_cast<uint32_t>(bytes_.size());

  // Build a temporary trie with per-node child lists, then flatten it in BFS order.
  struct TmpNode {
    int32_t token = -1;
    std::vector<std::pair<unsigned char, int32_t>> kids;  // sorted by label
  };
  std::vector<TmpNode> tmp(1);
  for (const auto& e : entries) {  // file order: a later duplicate overrides (as the package)
    int32_t n = 0;
    for (unsigned char c : e.bytes) {
      auto& kids = tmp[n].kids;
      auto it = std::lower_bound(kids.begin(), kids.end(), c,
                                 [](const auto& kv, unsigned char v) { return kv.first < v; });
      if (it != kids.end() && it->first == c) {
        n = it->second;
      } else {
        const int32_t fresh = static_cast<int32_t>(tmp.size());
        kids.insert(it, {c, fresh});
        tmp.emplace_back();  // invalidates `kids`; not used after this
        n = fresh;
      }
    }
    tmp[n].token = e.id;
  }
  for (int c = 0; c < 256; ++c) {
    bool found = false;
    for (const auto& kv : tmp[0].kids) found |= (kv.first == c && tmp[kv.second].token >= 0);
    if (!found) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "vocabulary has no single-byte token for byte 0x%02X (needed to encode any input)", c));
    }
  }
  // Flatten in BFS order.
  const size_t num = tmp.size();
  std::vector<int32_t> order;
  std::vector<int32_t> new_index(num, -1);
  order.reserve(num);
  order.push_back(0);
  new_index[0] = 0;
  for (size_t qi = 0; qi < order.size(); ++qi) {
    for (const auto& kv : tmp[order[qi]].kids) {
      new_index[kv.second] = static_cast<int32_t>(order.size());
      order.push_back(kv.second);
    }
  }
  nodes_.resize(num);
  label_.reserve(num);
  child_.reserve(num);
  for (size_t i = 0; i < num; ++i) {
    const TmpNode& t = tmp[order[i]];
    Node& node = nodes_[i];
    node.token = t.token;
    node.first = static_cast<uint32_t>(label_.size());
    node.count = static_cast<uint32_t>(t.kids.size());
    for (const auto& kv : t.kids) {
      label_.push_back(kv.first);
      child_.push_back(new_index[kv.second]);
    }
    if (i == 0 || static_cast<int>(t.kids.size()) >= kDenseThreshold) {
      node.dense = static_cast<int32_t>(dense_child_.size() / 256);
      dense_child_.resize(dense_child_.size() + 256, -1);
      int32_t* table = &dense_child_[static_cast<size_t>(node.dense) * 256];
      for (const auto& kv : t.kids) table[kv.first] = new_index[kv.second];
    }
  }
  return absl::OkStatus();
}

std::vector<int32_t> WorldTokenizer::Encode(std::string_view bytes) const {
  std::vector<int32_t> out;
  out.reserve(bytes.size() / 3 + 1);
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t pos = 0;
  while (pos < n) {
    int32_t node = 0, best_tok = -1;
    size_t best_end = pos;
    for (size_t i = pos; i < n; ++i) {
      node = Child(node, s[i]);
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best_tok = nodes_[node].token;
        best_end = i + 1;
      }
    }
    // Every single byte is a token (checked in Build), so best_tok >= 0 here.
    out.push_back(best_tok);
    pos = best_end;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadWorldTokenizer(const std::string& vocab_path) {
  std::ifstream f(vocab_path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open vocabulary file ", vocab_path));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return absl::DataLossError(absl::StrCat("error reading vocabulary file ", vocab_path));
  auto entries = ParseVocab(ss.str());
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(vocab_path, ": ", entries.status().message()));
  }
  auto tok = std::make_unique<WorldTokenizer>();
  absl::Status st = tok->Build(std::move(*entries));
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(vocab_path, ": ", st.message()));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace rwkvx
