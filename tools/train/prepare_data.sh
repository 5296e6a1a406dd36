#!/usr/bin/env bash
# Recreates the training text that is not committed: the King James Bible (public domain)
# from Debian's bible-kjv / bible-kjv-text packages, dumped as plain text.
# Usage: tools/train/prepare_data.sh [OUT_DIR]   (default .train/data; writes kjv.txt)
set -euo pipefail
OUT=${1:-.train/data}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download bible-kjv bible-kjv-text >/dev/null 2>&1)
for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/root"; done
# Verse numbers and chapter headings removed; paragraphs joined into lines.
"$tmp/root/usr/bin/bible" -p "$tmp/root/usr/lib" "Gen1:1-Rev22:21" \
  | sed -E 's/^ +[0-9]+ //' | grep -v -E '^[A-Za-z0-9 ]+ [0-9]+$' > "$OUT/kjv.txt"
echo "wrote $OUT/kjv.txt ($(wc -c < "$OUT/kjv.txt") bytes)"
