// Placeholder until implemented.
#include <cstdio>
#include "tools/subcommands.h"
namespace rwkvx {
int InspectMain(int, char**) { std::fprintf(stderr, "rwkvx inspect: not implemented yet\n"); return 2; }
}  // namespace rwkvx
