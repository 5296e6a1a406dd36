// The initial states a server was started with (--initial-state NAME=PATH): named RWKV
// states (engine/initial_state.h) that a request may start from instead of zeros. Each has
// a small number, its `space`, that keeps its prefix-cache checkpoints apart from those of
// other initial states (0 = the zero state).
//
// Ownership: built by ServeMain before the scheduler and the service, read-only after
// that; both hold a pointer and it outlives them.
// Threads: immutable once built; any thread may read it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/session_state.h"

namespace rwkvx {

struct InitialState {
  std::string name;
  std::string path;
  int space = 0;  // 1, 2, ... in the order given
  std::shared_ptr<const SessionState> state;
};

class InitialStates {
 public:
  // False when `name` is taken already.
  bool Add(const std::string& name, const std::string& path, SessionState state) {
    if (by_name_.count(name)) return false;
    InitialState s{name, path, static_cast<int>(by_name_.size()) + 1,
                   std::make_shared<const SessionState>(std::move(state))};
    by_name_.emplace(name, std::move(s));
    return true;
  }
  const InitialState* Find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> n;
    for (const auto& [k, v] : by_name_) n.push_back(k);
    return n;
  }
  bool empty() const { return by_name_.empty(); }

 private:
  std::map<std::string, InitialState> by_name_;
};

}  // namespace rwkvx
