# Sourced by the device scripts (device_engine_ab.sh, device_serve_e2e.sh, device_targets.sh):
# the start every call on the device machine shares.
#   device_begin DEFAULT_BUDGET MARGIN
# Results go under $OUT/r (OUT: the device tool's folder, /tmp/out elsewhere), archived to
# $OUT/results.tgz on exit (the tool returns few files); END is BUDGET_S seconds from now
# (default DEFAULT_BUDGET); .gpulibs is unpacked from .gpupack when absent or from another
# pack (a warm machine keeps the ignored .gpulibs of the call before: .gpulibs/.pack_id holds
# the checksum of the pack it came from) and put on LD_LIBRARY_PATH; with no .gpupack a
# carried .gpulibs is used as it is. Then `left` prints the seconds left less MARGIN, and `cap N` prints N
# capped by that (at least 5): each stage's timeout, so the archive is written before the
# tool's limit.
device_begin() {
  FINAL=${OUT:-/tmp/out}
  OUT=$FINAL/r
  mkdir -p "$OUT"
  trap 'tar -C "$FINAL" -czf "$FINAL/results.tgz" r && rm -rf "$OUT"' EXIT
  END=$(( $(date +%s) + ${BUDGET_S:-$1} ))
  MARGIN=$2
  if [ -f .gpupack/gpulibs.tar.xz ]; then
    local id
    id=$(cksum <.gpupack/gpulibs.tar.xz)
    if [ "$(cat .gpulibs/.pack_id 2>/dev/null)" != "$id" ]; then
      [ -d .gpulibs ] && echo "device_begin: .gpulibs is from another pack (a warm machine): unpacking this call's" >&2
      rm -rf .gpulibs && tar -xJf .gpupack/gpulibs.tar.xz && echo "$id" >.gpulibs/.pack_id
    fi
  fi
  export LD_LIBRARY_PATH=$PWD/.gpulibs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}
left() { echo $(( END - $(date +%s) - MARGIN )); }
cap() { local l; l=$(left); [ "$l" -lt 5 ] && l=5; [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
