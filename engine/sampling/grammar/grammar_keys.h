// Private to engine/sampling/grammar: canonical keys of compiled rules. Two rules (of the
// same or different grammars) get the same key exactly when they and every rule they can
// call behave the same, whatever their names and node numbering; the mask cache
// (token_masks.h) shares its per-node work between them. Pure; any thread.
#pragma once

#include "engine/sampling/grammar/grammar.h"

namespace rwkvx::grammar {

// Fills g->rule_keys and g->canonical_index.
void ComputeRuleKeys(Grammar* g);

}  // namespace rwkvx::grammar
