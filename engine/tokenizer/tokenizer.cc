// Byte tokenizer and StreamDecoder. The world tokenizer is in tokenizer_world.cc, the
// vocabulary parser in tokenizer_vocab.cc, UTF-8 helpers in utf8.cc.
#include "engine/tokenizer/tokenizer.h"

#include "engine/tokenizer/utf8.h"

namespace rwkvx {
namespace {

// id = byte + 1; id 0 = end of text; vocabulary size 257.
class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer() {
    for (int b = 0; b < 256; ++b) table_[b] = static_cast<char>(b);
  }
  std::string Name() const override { return "bytes"; }
  std::vector<int32_t> Encode(std::string_view bytes) const override {
    std::vector<int32_t> out(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i) out[i] = static_cast<unsigned char>(bytes[i]) + 1;
    return out;
  }
  std::string DecodeBytes(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (int32_t id : ids) {
      if (IsKnown(id)) out.push_back(static_cast<char>(id - 1));
    }
    return out;
  }
  std::string_view TokenBytes(int32_t id) const override {
    if (!IsKnown(id)) return {};
    return std::string_view(&table_[id - 1], 1);
  }
  bool IsKnown(int32_t id) const override { return id >= 1 && id <= 256; }
  int VocabSize() const override { return 257; }

 private:
  char table_[256];
};

}  // namespace

std::unique_ptr<Tokenizer> MakeByteTokenizer() { return std::make_unique<ByteTokenizer>(); }

std::string StreamDecoder::Push(int32_t id) {
  pending_.append(tok_->TokenBytes(id));
  size_t held = 0;
  std::string out = ReplaceInvalidUtf8(pending_, /*final=*/false, &held);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = ReplaceInvalidUtf8(pending_, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace rwkvx
