// StructuredOutputCompiler: OutputFormat -> TokenGrammar, with a small cache of compiled
// grammars keyed by kind and text (clients such as the openai package's `parse` send the
// same schema with every request). Runs on frontend threads.
#include "server/service/structured_output.h"

#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/grammar.h"
#include "engine/sampling/grammar/json_schema.h"

namespace rwkvx {
namespace {
constexpr size_t kMaxCachedText = 64 << 10;  // larger schemas and grammars are compiled each time
}  // namespace

std::shared_ptr<const grammar::TokenVocabulary> StructuredOutputCompiler::Vocabulary() {
  std::call_once(vocab_once_, [this] { vocab_ = grammar::TokenVocabulary::Build(*tok_); });
  return vocab_;
}

absl::StatusOr<std::shared_ptr<const grammar::TokenGrammar>> StructuredOutputCompiler::Compile(
    const OutputFormat& f) {
  using Kind = OutputFormat::Kind;
  if (f.kind == Kind::kText) return nullptr;
  const std::string key = absl::StrCat(static_cast<int>(f.kind), ":", f.text);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  }
  absl::StatusOr<std::shared_ptr<const grammar::Grammar>> g;
  switch (f.kind) {
    case Kind::kJsonObject: g = grammar::JsonObjectGrammar(); break;
    case Kind::kJsonSchema: g = grammar::CompileJsonSchema(f.text); break;
    case Kind::kGrammar: g = grammar::CompileGbnf(f.text); break;
    case Kind::kRegex: {
      auto gbnf = grammar::RegexToGbnf(f.text);
      if (gbnf.ok()) g = grammar::CompileGbnf(*gbnf);
      else g = gbnf.status();
      break;
    }
    case Kind::kText: break;
  }
  if (!g.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(f.where, ": ", g.status().message()));
  }
  auto tg = grammar::TokenGrammar::Bind(*g, Vocabulary());
  if (f.text.size() > kMaxCachedText) return tg;
  std::lock_guard<std::mutex> l(mu_);
  if (cache_.emplace(key, tg).second) {
    order_.push_back(key);
    while (order_.size() > max_cached_) {
      cache_.erase(order_.front());
      order_.pop_front();
    }
  }
  return tg;
}

}  // namespace rwkvx
