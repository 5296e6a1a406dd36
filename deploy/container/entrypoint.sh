#!/bin/bash
# Container entrypoint: `rwkvx serve`, which takes its flags from the environment itself:
#   RWKVX_FLAG_<NAME>=<value>  is  --<name>=<value>   (NAME upper-case, '_' for '-')
#   e.g. RWKVX_FLAG_MAX_SESSIONS=32 is --max-sessions=32; an empty value counts as not set.
# Arguments given to the container win over the environment (and `--help` works). A
# variable that names no flag makes rwkvx exit at once, naming it; the server logs the
# flags it took from the environment by name, never their values (keys stay out of logs).
# The image sets RWKVX_FLAG_HOST=0.0.0.0, RWKVX_FLAG_HTTP_PORT=8080,
# RWKVX_FLAG_GRPC_PORT=50051; `rwkvx serve --help` lists every flag.
set -euo pipefail

# Refuse the placeholder key of deploy/base/secret.yaml: a known key is no auth at all.
keys=${RWKVX_FLAG_API_KEY_FILE:-}
if [ -n "$keys" ] && grep -qx 'replace-me-before-deploying' "$keys" 2>/dev/null; then
  echo "entrypoint: $keys holds the placeholder key of deploy/base/secret.yaml; put real keys in the Secret" >&2
  exit 64
fi

echo "entrypoint: rwkvx serve $* (and the RWKVX_FLAG_* environment)" >&2
exec /opt/rwkvx/bin/rwkvx serve "$@"
