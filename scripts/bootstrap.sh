#!/bin/sh
# Installs what Orrery needs on a fresh Debian/Ubuntu machine that has Node 20 and npm (root, or sudo for apt).
#   sh scripts/bootstrap.sh demo   — npm packages, nats-server, the built dashboard
#   sh scripts/bootstrap.sh test   — the same, plus what the tests start (Chromium, …)
# It only installs what is missing, so running it every time is cheap.
set -e
mode="${1:-demo}"
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin"

# The dashboard's build (Vite 8, vite-plugin-svelte 7) needs Node ^20.19, ^22.12 or >= 24: say so before npm does
# something confusing. (Bun, which runs everything else, comes from npm.)
if ! command -v node >/dev/null 2>&1; then
  echo "bootstrap: Node.js is not installed: Orrery needs Node 20.19+ (or 22.12+, or 24+) and npm" >&2
  exit 1
fi
node_version="$(node -p process.versions.node)"
node_ok="$(node -p '(([M, m]) => (M === 20 && m >= 19) || (M === 22 && m >= 12) || M >= 24)(process.versions.node.split(".").map(Number))')"
if [ "$node_ok" != "true" ]; then
  echo "bootstrap: Node $node_version is too old for the dashboard build (Vite 8): Orrery needs Node 20.19+, 22.12+ or 24+." >&2
  echo "bootstrap: upgrade Node (e.g. from NodeSource or nvm) and run this again." >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else echo "bootstrap: not root and no sudo: install the Debian packages below by hand" >&2; fi
fi

need=""
command -v nats-server >/dev/null 2>&1 || need="$need nats-server"
if [ "$mode" = "test" ]; then
  [ -x /usr/bin/chromium ] || need="$need chromium"
  # real peers the integration tests start: Prometheus (remote_write, promtool), Alertmanager, Icinga2
  command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
  command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
  command -v icinga2 >/dev/null 2>&1 || need="$need icinga2"
  command -v openssl >/dev/null 2>&1 || need="$need openssl"
fi
if [ -n "$need" ]; then
  echo "bootstrap: installing Debian packages:$need" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if [ ! -x node_modules/.bin/bun ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing npm packages" >&2
  npm install --no-audit --no-fund --loglevel=error
fi

if [ ! -f dashboard/dist/index.html ] || [ -n "$(find dashboard/src dashboard/index.html dashboard/vite.config.ts pipelines/contracts -newer dashboard/dist/index.html 2>/dev/null | head -n 1)" ]; then
  echo "bootstrap: building the dashboard" >&2
  npm run --silent build:dashboard >/dev/null
fi
