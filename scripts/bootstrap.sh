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
  # libfaketime runs Icinga2 on a skewed clock (test/integration/alerts/icinga2-clock.test.ts)
  dpkg -s libfaketime >/dev/null 2>&1 || need="$need libfaketime"
  command -v openssl >/dev/null 2>&1 || need="$need openssl"
  # OpenLDAP: the identity tests start their own slapd with a seeded directory (test/helpers/ldap.ts)
  [ -x /usr/sbin/slapd ] || need="$need slapd"
  command -v ldapadd >/dev/null 2>&1 || need="$need ldap-utils"
fi
# apt-get that waits for another package manager instead of failing at once: right after a fresh machine boots,
# unattended-upgrades or cloud-init often holds the dpkg lock for minutes. Up to 10 minutes, saying so every 30 s.
apt_get() {
  waited=0
  while :; do
    err="$(DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=0 "$@" 2>&1 >/dev/null)" && return 0
    case "$err" in
      *"Could not get lock"*|*"Unable to acquire"*|*"is another process using it"*) ;;
      *) printf '%s\n' "$err" >&2; return 1 ;;
    esac
    if [ "$waited" -ge 600 ]; then
      echo "bootstrap: another package manager has held the apt/dpkg lock for 10 minutes; giving up:" >&2
      printf '%s\n' "$err" >&2
      return 1
    fi
    if [ $((waited % 30)) -eq 0 ]; then
      holder="$(printf '%s\n' "$err" | sed -n 's/.*held by \(process [0-9]* ([^)]*)\).*/\1/p' | head -n 1)"
      echo "bootstrap: waiting for another package manager${holder:+ ($holder)} to release the apt/dpkg lock… (${waited} s)" >&2
    fi
    sleep 5
    waited=$((waited + 5))
  done
}

if [ -n "$need" ]; then
  echo "bootstrap: installing Debian packages:$need" >&2
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends $need
fi

if [ ! -x node_modules/.bin/bun ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing npm packages" >&2
  npm install --no-audit --no-fund --loglevel=error
fi

if [ ! -f dashboard/dist/index.html ] || [ -n "$(find dashboard/src dashboard/index.html dashboard/vite.config.ts pipelines/contracts -newer dashboard/dist/index.html 2>/dev/null | head -n 1)" ]; then
  echo "bootstrap: building the dashboard" >&2
  npm run --silent build:dashboard >/dev/null
fi
