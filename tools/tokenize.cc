// Placeholder until implemented.
#include <cstdio>
#include "tools/subcommands.h"
namespace rwkvx {
int TokenizeMain(int, char**) { std::fprintf(stderr, "rwkvx tokenize: not implemented yet\n"); return 2; }
}  // namespace rwkvx
