#include "server/prefix_cache/prefix_cache.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "server/log.h"
#include "server/metrics/metrics.h"

namespace rwkvx {

struct PrefixCache::Node {
  Node* parent = nullptr;
  std::vector<int32_t> edge;  // tokens from the parent to this node (non-empty but at the root)
  size_t depth = 0;           // tokens from the root
  std::map<int32_t, std::unique_ptr<Node>> children;  // keyed by the child's edge[0]
  SessionId ckpt = 0;         // 0 = no checkpoint here
  std::vector<float> logits;  // [V] after token depth-1, or empty
  size_t bytes = 0;           // charged to the budget
  std::list<Node*>::iterator lru;
};

long long SplitInvariantTokens(const Backend& backend) {
  if (!backend.SplitInvariant()) return 0;
  const Model& m = backend.model();
  if (m.shape.n_attn_layer == 0) return LLONG_MAX;
  const SparseAttnConfig& a = m.attn;
  long long s = LLONG_MAX;
  // Prefill: a call of T tokens onto CT cached rows attends to the whole cache iff
  // T + CT <= threshold (else chunk-local, which depends on the cut). Decode: full
  // attention iff CT <= threshold (else chunk selection over rows that a different cut
  // would have computed differently). Both hold for every call that ends at or before
  // the threshold.
  if (a.prefill_mode == AttnPrefillMode::kChunk || a.decode_mode == AttnDecodeMode::kSparse) {
    s = std::max(0, a.Threshold());
  }
  // Compression runs before a call when CT > max_kv_cache_size and votes with that call's
  // tokens: no call starts past it when every call ends at or before it.
  if (a.max_kv_cache_size > 0) s = std::min<long long>(s, a.max_kv_cache_size);
  return s;
}

PrefixCache::PrefixCache(Backend* backend, PrefixCacheOptions opts, ServerMetrics* metrics)
    : backend_(backend), opts_(opts), metrics_(metrics) {
  roots_.emplace(0, std::make_unique<Node>());
  opts_.prefill_chunk = std::max(1, opts_.prefill_chunk);
  opts_.min_tokens = std::max(1, opts_.min_tokens);
  Publish();
}

PrefixCache::~PrefixCache() { Clear(); }

bool PrefixCache::Checkpointable(size_t n, bool aligned_prompt) const {
  if (n == 0 || n < static_cast<size_t>(opts_.min_tokens)) return false;
  if (static_cast<long long>(n) <= opts_.split_invariant_tokens) return true;
  return aligned_prompt && n % static_cast<size_t>(opts_.prefill_chunk) == 0;
}

PrefixCache::Node* PrefixCache::Root(int space) {
  auto& r = roots_[space];
  if (!r) r = std::make_unique<Node>();
  return r.get();
}

std::optional<PrefixCache::Hit> PrefixCache::Lookup(const std::vector<int32_t>& prompt,
                                                    size_t* shared, int space) {
  const size_t L = prompt.size();
  const bool any_cut = static_cast<long long>(L) <= opts_.split_invariant_tokens;
  auto usable = [&](const Node* n) {
    if (n->ckpt == 0) return false;
    if (n->depth == L ? n->logits.empty() : n->depth > L) return false;
    return any_cut || n->depth % static_cast<size_t>(opts_.prefill_chunk) == 0;
  };
  Node* best = nullptr;
  Node* node = Root(space);
  size_t pos = 0;
  for (;;) {
    if (usable(node)) best = node;
    if (pos == L) break;
    auto it = node->children.find(prompt[pos]);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    const size_t m = std::min(child->edge.size(), L - pos);
    size_t c = 0;
    while (c < m && child->edge[c] == prompt[pos + c]) ++c;
    if (c < child->edge.size()) {  // diverges (or ends) inside the edge
      pos += c;
      break;
    }
    pos += c;
    node = child;
  }
  if (shared) *shared = pos;
  std::optional<Hit> hit;
  if (best != nullptr) {
    auto fork = backend_->ForkSession(best->ckpt);
    if (fork.ok()) {
      hit.emplace();
      hit->session = *fork;
      hit->tokens = best->depth;
      if (best->depth == L) hit->logits = best->logits;
      Touch(best);
    } else {
      SLOG(WARNING) << "prefix cache: cannot fork a checkpoint: " << fork.status();
    }
  }
  if (hit) {
    ++stats_.hits;
    stats_.saved_tokens += static_cast<long long>(hit->tokens);
    if (metrics_) {
      metrics_->prefix_cache_hits->Increment();
      metrics_->prefix_cache_saved_tokens->Increment(static_cast<double>(hit->tokens));
    }
  } else {
    ++stats_.misses;
    if (metrics_) metrics_->prefix_cache_misses->Increment();
  }
  return hit;
}

void PrefixCache::Insert(const int32_t* tokens, size_t n, SessionId session, const float* logits,
                         int space) {
  Place(tokens, n, session, /*adopt=*/false, logits, space);
}

void PrefixCache::Adopt(const int32_t* tokens, size_t n, SessionId session, const float* logits,
                        int space) {
  Place(tokens, n, session, /*adopt=*/true, logits, space);
}

void PrefixCache::Place(const int32_t* tokens, size_t n, SessionId session, bool adopt,
                        const float* logits, int space) {
  auto release = [&] {
    if (adopt) (void)backend_->FreeSession(session);
  };
  if (opts_.budget_bytes == 0 || n == 0 || n < static_cast<size_t>(opts_.min_tokens)) {
    release();
    return;
  }
  // Already cached: only refresh its place in the LRU order.
  {
    Node* node = Root(space);
    size_t pos = 0;
    while (pos < n) {
      auto it = node->children.find(tokens[pos]);
      if (it == node->children.end()) break;
      Node* child = it->second.get();
      if (child->edge.size() > n - pos ||
          !std::equal(child->edge.begin(), child->edge.end(), tokens + pos)) {
        break;
      }
      pos += child->edge.size();
      node = child;
    }
    if (pos == n && node->ckpt != 0) {
      Touch(node);
      release();
      return;
    }
  }
  const size_t vocab = static_cast<size_t>(backend_->model().shape.vocab);
  const size_t bytes = backend_->SessionBytes(session) + (logits ? vocab * sizeof(float) : 0);
  if (bytes > opts_.budget_bytes) {
    release();
    return;
  }
  // Make room first: pruning may merge or remove childless, checkpoint-less nodes, so no
  // node of the new path may exist yet while it runs.
  while (stats_.bytes + bytes > opts_.budget_bytes && EvictOne()) {}
  SessionId ckpt = session;
  if (!adopt) {
    auto fork = backend_->ForkSession(session);
    if (!fork.ok()) {
      SLOG(WARNING) << "prefix cache: cannot fork a session for a checkpoint: " << fork.status();
      return;
    }
    ckpt = *fork;
  }
  Node* node = FindOrMake(tokens, n, space);
  node->ckpt = ckpt;
  node->bytes = bytes;
  if (logits) node->logits.assign(logits, logits + vocab);
  lru_.push_front(node);
  node->lru = lru_.begin();
  stats_.bytes += bytes;
  ++stats_.entries;
  ++stats_.inserts;
  if (metrics_) metrics_->prefix_cache_inserts->Increment();
  Publish();
}

PrefixCache::Node* PrefixCache::FindOrMake(const int32_t* tokens, size_t n, int space) {
  Node* node = Root(space);
  size_t pos = 0;
  while (pos < n) {
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->parent = node;
      leaf->edge.assign(tokens + pos, tokens + n);
      leaf->depth = n;
      Node* raw = leaf.get();
      node->children.emplace(tokens[pos], std::move(leaf));
      return raw;
    }
    Node* child = it->second.get();
    const size_t m = std::min(child->edge.size(), n - pos);
    size_t c = 0;
    while (c < m && child->edge[c] == tokens[pos + c]) ++c;
    if (c < child->edge.size()) {
      // Split the edge at c: node -> mid -> child.
      auto mid = std::make_unique<Node>();
      mid->parent = node;
      mid->edge.assign(child->edge.begin(), child->edge.begin() + c);
      mid->depth = node->depth + c;
      std::unique_ptr<Node> old = std::move(it->second);
      old->edge.erase(old->edge.begin(), old->edge.begin() + c);
      old->parent = mid.get();
      const int32_t key = old->edge[0];
      mid->children.emplace(key, std::move(old));
      it->second = std::move(mid);
      child = it->second.get();
    }
    pos += c;
    node = child;
  }
  return node;
}

std::vector<size_t> PrefixCache::EvictionOrderBytes() const {
  std::vector<size_t> out;
  out.reserve(lru_.size());
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) out.push_back(backend_->SessionBytes((*it)->ckpt));
  return out;
}

bool PrefixCache::EvictOne() {
  if (lru_.empty()) return false;
  Drop(lru_.back());
  ++stats_.evictions;
  if (metrics_) metrics_->prefix_cache_evictions->Increment();
  Publish();
  return true;
}

void PrefixCache::Clear() {
  while (!lru_.empty()) Drop(lru_.back());
  Publish();
}

void PrefixCache::Drop(Node* node) {
  absl::Status st = backend_->FreeSession(node->ckpt);
  if (!st.ok()) SLOG(ERROR) << "prefix cache: FreeSession(" << node->ckpt << "): " << st;
  lru_.erase(node->lru);
  stats_.bytes -= node->bytes;
  --stats_.entries;
  node->ckpt = 0;
  node->bytes = 0;
  node->logits.clear();
  node->logits.shrink_to_fit();
  Prune(node);
}

void PrefixCache::Prune(Node* node) {
  while (node->parent != nullptr && node->ckpt == 0) {  // roots have no parent
    Node* parent = node->parent;
    auto self = parent->children.find(node->edge[0]);
    if (node->children.empty()) {
      parent->children.erase(self);  // destroys node
      node = parent;
      continue;
    }
    if (node->children.size() == 1) {
      // Merge node into its only child (the child's address, held by the LRU, stays).
      std::unique_ptr<Node> child = std::move(node->children.begin()->second);
      child->edge.insert(child->edge.begin(), node->edge.begin(), node->edge.end());
      child->parent = parent;
      self->second = std::move(child);  // destroys node
    }
    return;
  }
}

void PrefixCache::Touch(Node* node) { lru_.splice(lru_.begin(), lru_, node->lru); }

size_t PrefixCache::NodeCount() const {
  size_t count = 0;
  std::vector<const Node*> todo;
  for (const auto& [space, r] : roots_) todo.push_back(r.get());
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    ++count;
    for (const auto& [k, c] : n->children) todo.push_back(c.get());
  }
  return count;
}

void PrefixCache::Publish() {
  if (!metrics_) return;
  metrics_->prefix_cache_bytes->Set(static_cast<double>(stats_.bytes));
  metrics_->prefix_cache_entries->Set(static_cast<double>(stats_.entries));
}

}  // namespace rwkvx
