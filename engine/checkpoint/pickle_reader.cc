// Pickle virtual machine (see pickle_reader.h). Iterative, bounds-checked, no recursion.
#include "engine/checkpoint/pickle_reader.h"

#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rwkvx {

namespace {

constexpr PickleId kNoMemo = std::numeric_limits<PickleId>::max();
constexpr size_t kMaxGlobalLine = 256;
// Far more than a state dict needs (~30 objects per tensor), small enough that a hostile
// pickle cannot make the arena absurdly large.
constexpr size_t kMaxObjects = size_t{1} << 22;

absl::Status Malformed(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

}  // namespace

const char* PickleKindName(PickleValue::Kind k) {
  switch (k) {
    case PickleValue::kNone: return "None";
    case PickleValue::kBool: return "bool";
    case PickleValue::kInt: return "int";
    case PickleValue::kFloat: return "float";
    case PickleValue::kString: return "str";
    case PickleValue::kBytes: return "bytes";
    case PickleValue::kTuple: return "tuple";
    case PickleValue::kList: return "list";
    case PickleValue::kDict: return "dict";
    case PickleValue::kGlobal: return "global";
    case PickleValue::kOpaque: return "object";
  }
  return "?";
}

PickleId PickleMachine::Add(PickleValue v) {
  values_.push_back(std::move(v));
  return static_cast<PickleId>(values_.size() - 1);
}

absl::Status PickleMachine::Need(size_t n) {
  if (n > prog_.size() - pos_) return Malformed("pickle truncated inside an opcode argument");
  return absl::OkStatus();
}

absl::StatusOr<PickleId> PickleMachine::Pop() {
  const size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) return Malformed("pickle stack underflow");
  PickleId id = stack_.back();
  stack_.pop_back();
  return id;
}

absl::StatusOr<std::vector<PickleId>> PickleMachine::PopToMark() {
  if (marks_.empty()) return Malformed("pickle MARK expected but none is set");
  const size_t m = marks_.back();
  marks_.pop_back();
  std::vector<PickleId> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
  stack_.resize(m);
  return items;
}

absl::StatusOr<PickleId> PickleMachine::Run(std::string_view program) {
  prog_ = program;
  pos_ = 0;
  stopped_ = false;
  values_.clear();
  stack_.clear();
  marks_.clear();
  memo_.clear();
  // Every object needs at least one opcode byte: reserving keeps indices cheap.
  values_.reserve(std::min<size_t>(program.size() / 8 + 16, 4096));
  while (!stopped_) {
    if (pos_ >= prog_.size()) return Malformed("pickle ended without STOP (truncated?)");
    const size_t op_pos = pos_;
    const uint8_t op = static_cast<uint8_t>(prog_[pos_++]);
    if (values_.size() > kMaxObjects) {
      return Malformed(absl::StrCat("pickle creates more than ", kMaxObjects, " objects"));
    }
    if (absl::Status s = Step(op); !s.ok()) {
      return absl::Status(s.code(), absl::StrFormat("pickle offset %d (opcode 0x%02x): %s", op_pos,
                                                    op, s.message()));
    }
  }
  if (stack_.empty()) return Malformed("pickle STOP with an empty stack");
  return stack_.back();
}

absl::Status PickleMachine::Step(uint8_t op) {
  auto rd = [&](size_t n) -> const unsigned char* {
    const auto* p = reinterpret_cast<const unsigned char*>(prog_.data() + pos_);
    pos_ += n;
    return p;
  };
  auto push_new = [&](PickleValue v) { stack_.push_back(Add(std::move(v))); };
  auto push_int = [&](int64_t x) {
    PickleValue v;
    v.kind = PickleValue::kInt;
    v.i = x;
    push_new(std::move(v));
  };
  auto push_str = [&](size_t len, PickleValue::Kind kind) -> absl::Status {
    if (auto s = Need(len); !s.ok()) return s;
    PickleValue v;
    v.kind = kind;
    v.s.assign(prog_.data() + pos_, len);
    pos_ += len;
    push_new(std::move(v));
    return absl::OkStatus();
  };
  auto push_tuple = [&](std::vector<PickleId> items) {
    PickleValue v;
    v.kind = PickleValue::kTuple;
    v.items = std::move(items);
    push_new(std::move(v));
  };
  auto memo_put = [&](uint64_t idx) -> absl::Status {
    if (stack_.empty()) return Malformed("memo put with an empty stack");
    // Valid pickles number memo slots densely; bound by the program size.
    if (idx > prog_.size()) return Malformed("memo index out of range");
    if (memo_.size() <= idx) memo_.resize(idx + 1, kNoMemo);
    memo_[idx] = stack_.back();
    return absl::OkStatus();
  };
  auto memo_get = [&](uint64_t idx) -> absl::Status {
    if (idx >= memo_.size() || memo_[idx] == kNoMemo) return Malformed("memo get of an unset slot");
    stack_.push_back(memo_[idx]);
    return absl::OkStatus();
  };
  auto set_items = [&](PickleId dict, const std::vector<PickleId>& kv) -> absl::Status {
    if (at(dict).kind != PickleValue::kDict) {
      return Malformed(absl::StrCat("SETITEM(S) on a ", PickleKindName(at(dict).kind)));
    }
    if (kv.size() % 2) return Malformed("SETITEMS with an odd number of items");
    auto& items = at(dict).items;
    items.insert(items.end(), kv.begin(), kv.end());
    return absl::OkStatus();
  };
  auto append_items = [&](PickleId list, const std::vector<PickleId>& xs) -> absl::Status {
    if (at(list).kind != PickleValue::kList) {
      return Malformed(absl::StrCat("APPEND(S) on a ", PickleKindName(at(list).kind)));
    }
    auto& items = at(list).items;
    items.insert(items.end(), xs.begin(), xs.end());
    return absl::OkStatus();
  };
  auto push_global = [&](std::string module, std::string name) -> absl::Status {
    if (!hooks_.find_class) return Malformed("globals are not allowed");
    if (auto s = hooks_.find_class(module, name); !s.ok()) return s;
    PickleValue v;
    v.kind = PickleValue::kGlobal;
    v.s = absl::StrCat(module, ".", name);
    push_new(std::move(v));
    return absl::OkStatus();
  };
  auto read_line = [&]() -> absl::StatusOr<std::string> {
    const size_t nl = prog_.find('\n', pos_);
    if (nl == std::string_view::npos) return Malformed("unterminated GLOBAL argument");
    if (nl - pos_ > kMaxGlobalLine) return Malformed("GLOBAL argument too long");
    std::string line(prog_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return line;
  };

  switch (op) {
    case 0x80: {  // PROTO
      if (auto s = Need(1); !s.ok()) return s;
      const int v = *rd(1);
      if (v < 2 || v > 5) return Malformed(absl::StrCat("unsupported pickle protocol ", v));
      return absl::OkStatus();
    }
    case 0x95:  // FRAME (protocol 4): a length hint only
      if (auto s = Need(8); !s.ok()) return s;
      rd(8);
      return absl::OkStatus();
    case '.':  // STOP
      stopped_ = true;
      return absl::OkStatus();
    case '(':  // MARK
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case '0': return Pop().status();  // POP
    case '1': return PopToMark().status();  // POP_MARK
    case '2': {  // DUP
      const size_t floor = marks_.empty() ? 0 : marks_.back();
      if (stack_.size() <= floor) return Malformed("pickle stack underflow");
      stack_.push_back(stack_.back());
      return absl::OkStatus();
    }
    case 'N': push_new(PickleValue{}); return absl::OkStatus();
    case 0x88:
    case 0x89: {  // NEWTRUE, NEWFALSE
      PickleValue v;
      v.kind = PickleValue::kBool;
      v.i = op == 0x88;
      push_new(std::move(v));
      return absl::OkStatus();
    }
    case 'J': {  // BININT
      if (auto s = Need(4); !s.ok()) return s;
      const unsigned char* p = rd(4);
      const uint32_t u = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
      push_int(static_cast<int32_t>(u));
      return absl::OkStatus();
    }
    case 'K':  // BININT1
      if (auto s = Need(1); !s.ok()) return s;
      push_int(*rd(1));
      return absl::OkStatus();
    case 'M': {  // BININT2
      if (auto s = Need(2); !s.ok()) return s;
      const unsigned char* p = rd(2);
      push_int(p[0] | (p[1] << 8));
      return absl::OkStatus();
    }
    case 0x8a: {  // LONG1: little-endian two's complement, n bytes
      if (auto s = Need(1); !s.ok()) return s;
      const size_t n = *rd(1);
      if (auto s = Need(n); !s.ok()) return s;
      if (n > 8) return Malformed("LONG1 integer does not fit in 64 bits");
      const unsigned char* p = rd(n);
      uint64_t u = 0;
      for (size_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(p[k]) << (8 * k);
      if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
      push_int(static_cast<int64_t>(u));
      return absl::OkStatus();
    }
    case 'G': {  // BINFLOAT: big-endian double
      if (auto s = Need(8); !s.ok()) return s;
      const unsigned char* p = rd(8);
      uint64_t u = 0;
      for (int k = 0; k < 8; ++k) u = (u << 8) | p[k];
      PickleValue v;
      v.kind = PickleValue::kFloat;
      std::memcpy(&v.f, &u, 8);
      push_new(std::move(v));
      return absl::OkStatus();
    }
    case 'X':    // BINUNICODE
    case 'T':    // BINSTRING
    case 'B': {  // BINBYTES
      if (auto s = Need(4); !s.ok()) return s;
      const unsigned char* p = rd(4);
      const uint32_t len = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
      return push_str(len, op == 'B' ? PickleValue::kBytes : PickleValue::kString);
    }
    case 0x8d:    // BINUNICODE8
    case 0x8e: {  // BINBYTES8
      if (auto s = Need(8); !s.ok()) return s;
      const unsigned char* p = rd(8);
      uint64_t len = 0;
      for (int k = 7; k >= 0; --k) len = (len << 8) | p[k];
      if (len > prog_.size()) return Malformed("string length past the end of the pickle");
      return push_str(static_cast<size_t>(len), op == 0x8e ? PickleValue::kBytes : PickleValue::kString);
    }
    case 0x8c:  // SHORT_BINUNICODE
    case 'U':   // SHORT_BINSTRING
    case 'C':   // SHORT_BINBYTES
      if (auto s = Need(1); !s.ok()) return s;
      return push_str(*rd(1), op == 'C' ? PickleValue::kBytes : PickleValue::kString);
    case ')': push_tuple({}); return absl::OkStatus();  // EMPTY_TUPLE
    case 't': {  // TUPLE
      auto items = PopToMark();
      if (!items.ok()) return items.status();
      push_tuple(std::move(*items));
      return absl::OkStatus();
    }
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1..3
      const size_t n = op - 0x84;
      std::vector<PickleId> items(n);
      for (size_t k = n; k-- > 0;) {
        auto id = Pop();
        if (!id.ok()) return id.status();
        items[k] = *id;
      }
      push_tuple(std::move(items));
      return absl::OkStatus();
    }
    case ']':    // EMPTY_LIST
    case '}': {  // EMPTY_DICT
      PickleValue v;
      v.kind = op == ']' ? PickleValue::kList : PickleValue::kDict;
      push_new(std::move(v));
      return absl::OkStatus();
    }
    case 'l':    // LIST
    case 'd': {  // DICT
      auto items = PopToMark();
      if (!items.ok()) return items.status();
      PickleValue v;
      v.kind = op == 'l' ? PickleValue::kList : PickleValue::kDict;
      if (op == 'd' && items->size() % 2) return Malformed("DICT with an odd number of items");
      v.items = std::move(*items);
      push_new(std::move(v));
      return absl::OkStatus();
    }
    case 'a': {  // APPEND
      auto x = Pop();
      if (!x.ok()) return x.status();
      auto list = Pop();
      if (!list.ok()) return list.status();
      stack_.push_back(*list);
      return append_items(*list, {*x});
    }
    case 'e': {  // APPENDS
      auto xs = PopToMark();
      if (!xs.ok()) return xs.status();
      if (stack_.empty() || stack_.size() <= (marks_.empty() ? 0 : marks_.back())) {
        return Malformed("APPENDS without a list");
      }
      return append_items(stack_.back(), *xs);
    }
    case 's': {  // SETITEM
      auto v = Pop();
      if (!v.ok()) return v.status();
      auto k = Pop();
      if (!k.ok()) return k.status();
      auto d = Pop();
      if (!d.ok()) return d.status();
      stack_.push_back(*d);
      return set_items(*d, {*k, *v});
    }
    case 'u': {  // SETITEMS
      auto kv = PopToMark();
      if (!kv.ok()) return kv.status();
      if (stack_.empty() || stack_.size() <= (marks_.empty() ? 0 : marks_.back())) {
        return Malformed("SETITEMS without a dict");
      }
      return set_items(stack_.back(), *kv);
    }
    case 'c': {  // GLOBAL
      auto module = read_line();
      if (!module.ok()) return module.status();
      auto name = read_line();
      if (!name.ok()) return name.status();
      return push_global(std::move(*module), std::move(*name));
    }
    case 0x93: {  // STACK_GLOBAL
      auto name = Pop();
      if (!name.ok()) return name.status();
      auto module = Pop();
      if (!module.ok()) return module.status();
      if (at(*name).kind != PickleValue::kString || at(*module).kind != PickleValue::kString) {
        return Malformed("STACK_GLOBAL needs two strings");
      }
      return push_global(at(*module).s, at(*name).s);
    }
    case 'Q': {  // BINPERSID
      auto pid = Pop();
      if (!pid.ok()) return pid.status();
      if (!hooks_.persistent_load) return Malformed("persistent ids are not allowed");
      auto obj = hooks_.persistent_load(*this, *pid);
      if (!obj.ok()) return obj.status();
      stack_.push_back(*obj);
      return absl::OkStatus();
    }
    case 'R': {  // REDUCE
      auto args = Pop();
      if (!args.ok()) return args.status();
      auto fn = Pop();
      if (!fn.ok()) return fn.status();
      if (at(*fn).kind != PickleValue::kGlobal) {
        return Malformed(absl::StrCat("REDUCE on a ", PickleKindName(at(*fn).kind), ", not a global"));
      }
      if (at(*args).kind != PickleValue::kTuple) return Malformed("REDUCE arguments are not a tuple");
      if (!hooks_.reduce) return Malformed("REDUCE is not allowed");
      auto obj = hooks_.reduce(*this, *fn, *args);
      if (!obj.ok()) return obj.status();
      stack_.push_back(*obj);
      return absl::OkStatus();
    }
    case 'b': {  // BUILD
      auto state = Pop();
      if (!state.ok()) return state.status();
      const size_t floor = marks_.empty() ? 0 : marks_.back();
      if (stack_.size() <= floor) return Malformed("BUILD without an object");
      if (!hooks_.build) return Malformed("BUILD is not allowed");
      return hooks_.build(*this, stack_.back(), *state);
    }
    case 'q':  // BINPUT
      if (auto s = Need(1); !s.ok()) return s;
      return memo_put(*rd(1));
    case 'r': {  // LONG_BINPUT
      if (auto s = Need(4); !s.ok()) return s;
      const unsigned char* p = rd(4);
      return memo_put(p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint64_t>(p[3]) << 24));
    }
    case 0x94:  // MEMOIZE
      return memo_put(memo_.size());
    case 'h':  // BINGET
      if (auto s = Need(1); !s.ok()) return s;
      return memo_get(*rd(1));
    case 'j': {  // LONG_BINGET
      if (auto s = Need(4); !s.ok()) return s;
      const unsigned char* p = rd(4);
      return memo_get(p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint64_t>(p[3]) << 24));
    }
    default:
      return Malformed(absl::StrFormat("unsupported pickle opcode 0x%02x", op));
  }
}

}  // namespace rwkvx
