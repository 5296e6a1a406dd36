// `rwkvx serve`: the server's entry point, declared by the server (tools/main.cc calls it).
// Parses the flags (server/app/serve_flags.h), builds the model, tokenizer, backend,
// scheduler, service and frontends, serves until SIGTERM/SIGINT, then drains. Returns the
// process exit code. Called once, on the main thread.
#pragma once

namespace rwkvx {
int ServeMain(int argc, char** argv);
}  // namespace rwkvx
