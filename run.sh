#!/usr/bin/env bash
# Minqing's two entry points, usable on a fresh Debian machine with Python 3.11:
#   ./run.sh demo [--port N]   set up, start the embedded PostGIS, load the demo, serve it
#   ./run.sh test [pytest args] set up the same way and run the whole test suite
# Setup installs what is missing: Debian packages (as root; otherwise it names the command),
# a virtual environment with the project, and the npm assets from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting chromium fonts-noto-cjk)
command -v npm >/dev/null 2>&1 || DEBS+=(nodejs npm)

log() { printf '[run.sh] %s\n' "$*" >&2; }

setup_debian() {
  local missing=() p
  for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    log "install them with: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

setup_python() {
  local py stamp want
  py=$(command -v python3.11 || true)
  if [ -z "$py" ]; then
    log "Python 3.11 is required (apt-get install python3.11 python3.11-venv)"
    exit 1
  fi
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  want=$(sha1sum pyproject.toml | cut -c1-40)
  stamp=.venv/.minqing-setup
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

setup_npm() {
  local stamp want
  want=$(sha1sum package-lock.json | cut -c1-40)
  stamp=node_modules/.minqing-setup
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing web assets from the npm registry (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
}

setup() { setup_debian; setup_python; setup_npm; }

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) setup; exec .venv/bin/minqing demo "$@" ;;
  test) setup; exec .venv/bin/python -m pytest "$@" ;;
  setup) setup ;;
  *) echo "usage: ./run.sh demo [--port N] | ./run.sh test [pytest args] | ./run.sh setup" >&2; exit 2 ;;
esac
