// build/rwkvx: one binary, several subcommands.
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/cpu/blas_setup.h"
#include "tools/subcommands.h"
#ifdef RWKVX_HAVE_SERVER
#include "server/app/serve_main.h"
#endif

namespace {

struct Subcommand {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Subcommand kSubcommands[] = {
#ifdef RWKVX_HAVE_SERVER
    {"serve", rwkvx::ServeMain, "run the inference server (gRPC + OpenAI-compatible HTTP)"},
#endif
    {"replay", rwkvx::ReplayMain, "run a token script through the CPU engine, write logits (parity tool)"},
    {"inspect", rwkvx::InspectMain, "print a checkpoint's inferred model shape as JSON"},
    {"tokenize", rwkvx::TokenizeMain, "encode text to token ids or decode ids to text"},
    {"grammar", rwkvx::GrammarMain, "compile a GBNF grammar or JSON schema, match texts, print token masks"},
};

void Usage(FILE* f) {
  std::fprintf(f, "usage: rwkvx <subcommand> [flags]   (rwkvx <subcommand> --help for its flags)\n\n");
  for (const auto& s : kSubcommands) std::fprintf(f, "  %-10s %s\n", s.name, s.help);
}

}  // namespace

int main(int argc, char** argv) {
  rwkvx::cpu::MaybeReexecWithFasterBlas(argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    Usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& s : kSubcommands) {
    if (std::string(argv[1]) == s.name) return s.fn(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "rwkvx: unknown subcommand '%s'\n\n", argv[1]);
  Usage(stderr);
  return 2;
}
