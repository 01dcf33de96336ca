#!/bin/sh
# Builds the host agent into one self-contained executable, dist/orrery-agent (it carries the Bun runtime: no Bun or
# Node needed where it runs). Usage: sh scripts/build-agent.sh [outfile]   (cross-build: BUN_TARGET=bun-linux-arm64)
set -eu
cd "$(dirname "$0")/.."
out="${1:-dist/orrery-agent}"
bun="node_modules/.bin/bun"
[ -x "$bun" ] || bun="$(command -v bun)"
mkdir -p "$(dirname "$out")"
"$bun" build --compile --minify ${BUN_TARGET:+--target="$BUN_TARGET"} services/agent/main.ts --outfile "$out" >&2
echo "$out"
