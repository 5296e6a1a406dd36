// Canonical JSON text and GBNF literals for the schema compiler (json_schema_compiler.h).
#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "engine/sampling/grammar/json_schema_compiler.h"

namespace rwkvx::grammar {

std::string CanonicalJsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

std::string CanonicalJson(const OrderedJson& v) {
  switch (v.type()) {
    case OrderedJson::value_t::string:
      return CanonicalJsonString(v.get<std::string>());
    case OrderedJson::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
        return absl::StrFormat("%.0f", d == 0 ? 0.0 : d);  // no "-0"
      }
      return v.dump();
    }
    case OrderedJson::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out.push_back(',');
        out += CanonicalJson(v[i]);
      }
      return out + "]";
    }
    case OrderedJson::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.items()) {
        if (!first) out.push_back(',');
        out += CanonicalJsonString(k);
        out.push_back(':');
        out += CanonicalJson(x);
        first = false;
      }
      return out + "}";
    }
    default:
      return v.dump();
  }
}

std::string GbnfLiteral(std::string_view bytes) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\x%02X", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

}  // namespace rwkvx::grammar
