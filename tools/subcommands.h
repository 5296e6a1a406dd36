// Subcommands of build/rwkvx. Each takes the arguments after its name and returns the
// process exit code. Called once from main(), on the main thread.
#pragma once

namespace rwkvx {
int ReplayMain(int argc, char** argv);    // tools/replay.cc: parity tool
int InspectMain(int argc, char** argv);   // tools/inspect.cc: print a checkpoint's shape
int TokenizeMain(int argc, char** argv);  // tools/tokenize.cc: encode/decode files
int GrammarMain(int argc, char** argv);   // tools/grammar.cc: grammars, matching, masks
}  // namespace rwkvx
