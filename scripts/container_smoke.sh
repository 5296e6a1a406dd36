#!/usr/bin/env bash
# Container smoke test (docs/DEPLOY.md): builds the image with Debian's podman on a
# Debian 12 base made here from Debian's packages (debootstrap, then `podman import`),
# runs it on the CPU backend the way deploy/ does (flags from RWKVX_FLAG_*, API key from
# a mounted file, read-only root, non-root user), checks that the placeholder API key
# is refused, checks HEALTHCHECK, gets a completion
# with the OpenAI Python client, then SIGTERM: the drain must exit 0.
# Needs root. Takes ~15-25 min on 2 cores (most of it compiling): not part of CI.
#   scripts/container_smoke.sh            (BUILD_JOBS=N, SMOKE_PORT=N, SMOKE_WORK=DIR)
#
# Sandbox notes (why the podman flags below): this kind of machine has cgroups in hybrid
# mode (v1 controllers + v2), which crun refuses, so runc is the OCI runtime; the
# process lacks CAP_SYS_RESOURCE, so podman's default rlimits (above the host's) cannot
# be set: ulimits are given explicitly below the host's; host networking, no CNI setup.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${SMOKE_WORK:-/var/tmp/rwkvx-smoke}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=localhost/rwkvx-debian:12-debootstrap
IMAGE=localhost/rwkvx-serve:cpu-smoke
NAME=rwkvx-smoke
PORT=${SMOKE_PORT:-18480}
KEY=smoke-test-key
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
mkdir -p "$WORK"

step() { echo "== $(date -u +%H:%M:%S) $*"; }

need=()
for p in podman buildah debootstrap runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
"${PODMAN[@]}" --version

if ! "${PODMAN[@]}" image exists "$BASE"; then
  step "debootstrap bookworm (minbase) -> $BASE"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" > "$WORK/debootstrap.log"
  cat > "$WORK/rootfs/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SRC
  chroot "$WORK/rootfs" apt-get clean
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE"
  rm -rf "$WORK/rootfs"
fi

step "podman build (BUILD_JOBS=${BUILD_JOBS:-2})"
"${PODMAN[@]}" build --format docker --network host "${LIMITS[@]}" \
  --build-arg BUILD_BASE="$BASE" --build-arg RUNTIME_BASE="$BASE" \
  --build-arg BUILD_JOBS="${BUILD_JOBS:-2}" -t "$IMAGE" .
"${PODMAN[@]}" image inspect "$IMAGE" \
  --format 'image: {{.Size}} bytes, user {{.Config.User}}, healthcheck {{.Config.Healthcheck.Test}}'

step "the placeholder API key of deploy/base/secret.yaml is refused"
printf 'replace-me-before-deploying\n' > "$WORK/placeholder-keys"
chmod 644 "$WORK/placeholder-keys"
code=0
"${PODMAN[@]}" run --rm --network host "${LIMITS[@]}" \
  -v "$WORK/placeholder-keys:/etc/rwkvx/api-keys/keys:ro" \
  -e RWKVX_FLAG_API_KEY_FILE=/etc/rwkvx/api-keys/keys "$IMAGE" || code=$?
[ "$code" = 64 ] || { echo "placeholder key: exit code $code, want 64"; exit 1; }

step "run on the CPU backend, port $PORT"
printf '%s\n' "$KEY" > "$WORK/keys"
chmod 644 "$WORK/keys"
"${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
cleanup() { "${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${PODMAN[@]}" run -d --name "$NAME" --network host "${LIMITS[@]}" --read-only \
  -v "$WORK/keys:/etc/rwkvx/api-keys/keys:ro" \
  -e RWKVX_FLAG_HOST=127.0.0.1 -e RWKVX_FLAG_HTTP_PORT="$PORT" \
  -e RWKVX_FLAG_GRPC_PORT=$((PORT + 1)) -e RWKVX_FLAG_BACKEND=cpu \
  -e RWKVX_FLAG_THREADS=2 -e RWKVX_FLAG_API_KEY_FILE=/etc/rwkvx/api-keys/keys \
  "$IMAGE"
for _ in $(seq 60); do
  python3 - "$PORT" <<'PY' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=1)
except Exception:
    sys.exit(1)
PY
  sleep 1
done
echo "uid in container: $("${PODMAN[@]}" exec "$NAME" id -u)"
"${PODMAN[@]}" healthcheck run "$NAME" && echo "HEALTHCHECK: healthy"

step "OpenAI client"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import openai' 2>/dev/null || .venv/bin/pip install -q openai
.venv/bin/python - "$PORT" "$KEY" <<'PY'
import sys
import openai
port, key = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1"
try:
    openai.OpenAI(base_url=base, api_key="wrong").models.list()
    sys.exit("a wrong API key was accepted")
except openai.AuthenticationError:
    print("wrong API key: 401 as expected")
client = openai.OpenAI(base_url=base, api_key=key)
model = client.models.list().data[0].id
r = client.completions.create(model=model, prompt="Hello from a container", max_tokens=16,
                              temperature=0, seed=1)
print(f"model {model}: {r.usage.completion_tokens} tokens, finish_reason "
      f"{r.choices[0].finish_reason}, text {r.choices[0].text!r}")
assert r.usage.completion_tokens > 0
PY

step "SIGTERM: drain and exit"
"${PODMAN[@]}" stop -t 40 "$NAME" >/dev/null
code=$("${PODMAN[@]}" inspect "$NAME" --format '{{.State.ExitCode}}')
"${PODMAN[@]}" logs "$NAME" 2>&1 | tail -n 4
[ "$code" = 0 ] || { echo "exit code $code"; exit 1; }
step "container smoke test passed"
