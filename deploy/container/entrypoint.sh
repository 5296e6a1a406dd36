#!/bin/bash
# Container entrypoint: `rwkvx serve` with its flags taken from the environment.
#   RWKVX_FLAG_<NAME>=<value>  ->  --<name>=<value>   (NAME upper-case, '_' for '-')
#   e.g. RWKVX_FLAG_MAX_SESSIONS=32 -> --max-sessions=32; an empty value is skipped.
# Arguments given to the container are appended after them (so they win for repeatable
# flags such as --api-key, and `--help` works). Unknown flags make rwkvx exit at once.
# The image sets RWKVX_FLAG_HOST=0.0.0.0, RWKVX_FLAG_HTTP_PORT=8080,
# RWKVX_FLAG_GRPC_PORT=50051; `rwkvx serve --help` lists every flag.
set -euo pipefail

args=()
while IFS= read -r -d '' kv; do
  name=${kv%%=*}
  value=${kv#*=}
  case $name in
    RWKVX_FLAG_?*)
      [ -n "$value" ] || continue
      flag=${name#RWKVX_FLAG_}
      flag=${flag,,}
      args+=("--${flag//_/-}=${value}")
      ;;
  esac
done < <(env -0 | sort -z)

# Refuse the placeholder key of deploy/base/secret.yaml: a known key is no auth at all.
keys=${RWKVX_FLAG_API_KEY_FILE:-}
if [ -n "$keys" ] && grep -qx 'replace-me-before-deploying' "$keys" 2>/dev/null; then
  echo "entrypoint: $keys holds the placeholder key of deploy/base/secret.yaml; put real keys in the Secret" >&2
  exit 64
fi

echo "entrypoint: rwkvx serve ${args[*]} $*" >&2
exec /opt/rwkvx/bin/rwkvx serve "${args[@]}" "$@"
