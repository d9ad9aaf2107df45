#!/usr/bin/env bash
# Installs what burrow needs on a fresh Debian/Ubuntu machine: nats-server and the sqlite3 shell
# (apt, only when missing), then the npm dependencies (npm ci; better-sqlite3 compiles ~1 min).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]} > 0)); then
  echo "installing ${missing[*]} (apt-get)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nats-server --version
sqlite3 --version | cut -d' ' -f1-2
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
