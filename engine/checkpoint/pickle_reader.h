// A small, non-recursive pickle virtual machine for the subset of protocol 2-4 that
// torch.save produces for a dict of tensors (plus a few common opcodes). Anything else
// is rejected with an error naming the opcode and its offset.
//
// Objects live in an arena owned by PickleMachine and refer to each other by index, so
// self-referencing structures cannot leak or recurse. Globals, persistent ids and REDUCE
// are delegated to hooks supplied by the caller (the torch-specific part lives in
// checkpoint_pth.cc). Every object costs at least one input byte, so memory is bounded by
// the input length.
//
// Ownership: the machine owns all values; indices stay valid for its lifetime.
// Thread-safety: none; one machine per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

using PickleId = uint32_t;

struct PickleValue {
  enum Kind : uint8_t {
    kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kGlobal,
    kOpaque,  // produced by a hook (e.g. a torch storage or tensor); tag in `i`
  };
  Kind kind = kNone;
  int64_t i = 0;       // kBool, kInt, kOpaque (hook-defined tag / index)
  double f = 0;        // kFloat
  std::string s;       // kString, kBytes; kGlobal: "module.name"
  std::vector<PickleId> items;  // kTuple, kList; kDict: key0, val0, key1, val1, ...
};

const char* PickleKindName(PickleValue::Kind k);

class PickleMachine {
 public:
  struct Hooks {
    // GLOBAL / STACK_GLOBAL: return OK to allow pushing the global "module.name".
    std::function<absl::Status(const std::string& module, const std::string& name)> find_class;
    // BINPERSID: the persistent id object -> the object to push.
    std::function<absl::StatusOr<PickleId>(PickleMachine&, PickleId pid)> persistent_load;
    // REDUCE: callable (always a kGlobal) and args (a tuple) -> the result object.
    std::function<absl::StatusOr<PickleId>(PickleMachine&, PickleId callable, PickleId args)> reduce;
    // BUILD: object and state; may ignore the state.
    std::function<absl::Status(PickleMachine&, PickleId obj, PickleId state)> build;
  };

  explicit PickleMachine(Hooks hooks) : hooks_(std::move(hooks)) {}

  // Runs to STOP and returns the resulting object. Errors are InvalidArgument (malformed
  // or unsupported pickle) or whatever a hook returned, prefixed with the byte offset.
  absl::StatusOr<PickleId> Run(std::string_view program);

  const PickleValue& at(PickleId id) const { return values_[id]; }
  PickleValue& at(PickleId id) { return values_[id]; }
  PickleId Add(PickleValue v);
  size_t size() const { return values_.size(); }

 private:
  absl::Status Step(uint8_t op);
  absl::StatusOr<PickleId> Pop();
  absl::StatusOr<std::vector<PickleId>> PopToMark();
  absl::Status Need(size_t n);

  Hooks hooks_;
  std::vector<PickleValue> values_;
  std::vector<PickleId> stack_;
  std::vector<size_t> marks_;
  std::vector<PickleId> memo_;  // dense; kNoMemo where unset
  std::string_view prog_;
  size_t pos_ = 0;
  bool stopped_ = false;
};

}  // namespace rwkvx
