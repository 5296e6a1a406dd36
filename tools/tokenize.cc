// `rwkvx tokenize`: encode bytes to token ids or decode ids to bytes, for people and for
// the parity tests. Runs once on the main thread.
//
//   rwkvx tokenize (--vocab FILE | --bytes) (--encode | --decode) [--jsonl]
//                  [--in FILE] [--out FILE]        (FILE "-" or absent = stdin / stdout)
//
// Plain mode: --encode reads raw bytes and writes one JSON array of ids; --decode reads one
// JSON array of ids and writes the raw bytes (unknown ids and 0 contribute nothing).
// --jsonl mode, one record per line:
//   --encode: in  {"text": "..."} or {"hex": "00ff..."} (arbitrary bytes)
//             out [id, ...]
//   --decode: in  [id, ...] or {"ids": [id, ...]}
//             out {"hex": bytes, "text": bytes with U+FFFD for invalid UTF-8,
//                  "stream": [the StreamDecoder's output after each Push, then Flush]}
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "tools/subcommands.h"

namespace rwkvx {
namespace {

using nlohmann::json;

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: rwkvx tokenize (--vocab FILE | --bytes) (--encode | --decode) [--jsonl]\n"
               "                      [--in FILE] [--out FILE]\n"
               "  --encode   raw bytes in -> JSON array of ids out\n"
               "  --decode   JSON array of ids in -> raw bytes out\n"
               "  --jsonl    one record per line: encode {\"text\":..} or {\"hex\":..} -> [ids];\n"
               "             decode [ids] or {\"ids\":[..]} -> {\"hex\",\"text\",\"stream\"}\n"
               "  FILE '-' (the default) is stdin / stdout\n");
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string ToHex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

absl::StatusOr<std::string> FromHex(std::string_view h) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (h.size() % 2) return absl::InvalidArgumentError("odd number of hex digits");
  std::string out(h.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int a = val(h[2 * i]), b = val(h[2 * i + 1]);
    if (a < 0 || b < 0) return absl::InvalidArgumentError("bad hex digit");
    out[i] = static_cast<char>(a * 16 + b);
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> IdsFromJson(const json& j) {
  const json* arr = &j;
  if (j.is_object() && j.contains("ids")) arr = &j["ids"];
  if (!arr->is_array()) return absl::InvalidArgumentError("expected a JSON array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(arr->size());
  for (const auto& v : *arr) {
    if (!v.is_number_integer()) return absl::InvalidArgumentError("token ids must be integers");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id > INT32_MAX) return absl::InvalidArgumentError("token id out of range");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

absl::StatusOr<std::string> EncodeLine(const Tokenizer& tok, std::string_view line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  std::string bytes;
  if (j.contains("text") && j["text"].is_string()) {
    bytes = j["text"].get<std::string>();
  } else if (j.contains("hex") && j["hex"].is_string()) {
    auto b = FromHex(j["hex"].get<std::string>());
    if (!b.ok()) return b.status();
    bytes = std::move(*b);
  } else {
    return absl::InvalidArgumentError("expected a \"text\" or \"hex\" string field");
  }
  return json(tok.Encode(bytes)).dump();
}

absl::StatusOr<std::string> DecodeLine(const Tokenizer& tok, std::string_view line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
  auto ids = IdsFromJson(j);
  if (!ids.ok()) return ids.status();
  const std::string bytes = tok.DecodeBytes(*ids);
  json stream = json::array();
  StreamDecoder dec(&tok);
  for (int32_t id : *ids) stream.push_back(dec.Push(id));
  stream.push_back(dec.Flush());
  json out = {{"hex", ToHex(bytes)}, {"text", ReplaceInvalidUtf8(bytes)}, {"stream", stream}};
  return out.dump();
}

int Run(int argc, char** argv) {
  std::string vocab, in = "-", out_path = "-";
  bool bytes_tok = false, encode = false, decode = false, jsonl = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else if (a == "--vocab") {
      if (!next(&vocab)) break;
    } else if (a == "--in") {
      if (!next(&in)) break;
    } else if (a == "--out") {
      if (!next(&out_path)) break;
    } else if (a == "--bytes") {
      bytes_tok = true;
    } else if (a == "--encode") {
      encode = true;
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--jsonl") {
      jsonl = true;
    } else {
      std::fprintf(stderr, "rwkvx tokenize: unknown flag '%s'\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (encode == decode || bytes_tok == !vocab.empty()) {
    std::fprintf(stderr, "rwkvx tokenize: need exactly one of --encode/--decode and one of --vocab/--bytes\n");
    Usage(stderr);
    return 2;
  }
  std::unique_ptr<Tokenizer> tok;
  if (bytes_tok) {
    tok = MakeByteTokenizer();
  } else {
    auto t = LoadWorldTokenizer(vocab);
    if (!t.ok()) {
      std::fprintf(stderr, "rwkvx tokenize: %s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    tok = std::move(*t);
  }
  auto input = ReadAll(in);
  if (!input.ok()) {
    std::fprintf(stderr, "rwkvx tokenize: %s\n", std::string(input.status().message()).c_str());
    return 1;
  }
  std::string output;
  if (!jsonl) {
    if (encode) {
      output = json(tok->Encode(*input)).dump() + "\n";
    } else {
      json j = json::parse(*input, nullptr, /*allow_exceptions=*/false);
      auto ids = j.is_discarded() ? absl::StatusOr<std::vector<int32_t>>(
                                        absl::InvalidArgumentError("input is not JSON"))
                                  : IdsFromJson(j);
      if (!ids.ok()) {
        std::fprintf(stderr, "rwkvx tokenize: %s\n", std::string(ids.status().message()).c_str());
        return 1;
      }
      output = tok->DecodeBytes(*ids);
    }
  } else {
    std::string_view rest = *input;
    size_t line_no = 0;
    while (!rest.empty()) {
      size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = (nl == std::string_view::npos) ? std::string_view() : rest.substr(nl + 1);
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      auto r = encode ? EncodeLine(*tok, line) : DecodeLine(*tok, line);
      if (!r.ok()) {
        std::fprintf(stderr, "rwkvx tokenize: %s line %zu: %s\n", in.c_str(), line_no,
                     std::string(r.status().message()).c_str());
        return 1;
      }
      output += *r;
      output += '\n';
    }
  }
  if (out_path == "-") {
    std::fwrite(output.data(), 1, output.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  std::ofstream f(out_path, std::ios::binary);
  f.write(output.data(), static_cast<std::streamsize>(output.size()));
  f.close();
  if (!f) {
    std::fprintf(stderr, "rwkvx tokenize: cannot write %s\n", out_path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int TokenizeMain(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {  // nlohmann / allocation: never escape main
    std::fprintf(stderr, "rwkvx tokenize: %s\n", e.what());
    return 1;
  }
}

}  // namespace rwkvx
