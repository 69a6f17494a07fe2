#!/usr/bin/env bash
# System pieces the tests drive for real, next to the Python environment:
#   - Debian's headless Chromium (the widget browser test, through Playwright),
#   - configurable-http-proxy from npm (the JupyterHub test), installed under .venv/node.
# Best effort and idempotent: where a piece cannot be installed (no root, no apt, no npm) this
# says why and the tests that need it skip with that reason. Marked done by .venv/.system-ready.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${PARALLAX_VENV:-.venv}
STAMP="$VENV/.system-ready"
[[ -f "$STAMP" ]] && exit 0
mkdir -p "$VENV"
ok=1

if ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian chromium (browser tests)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        >/dev/null) || { echo "[setup] chromium could not be installed" >&2; ok=0; }
  else
    echo "[setup] chromium missing and apt-get unavailable (or not root): browser tests skip" >&2
    ok=0
  fi
fi

if [[ ! -x "$VENV/node/node_modules/.bin/configurable-http-proxy" ]]; then
  if command -v npm >/dev/null 2>&1; then
    echo "[setup] installing configurable-http-proxy (JupyterHub test)" >&2
    npm install --silent --no-audit --no-fund --prefix "$VENV/node" configurable-http-proxy \
        >/dev/null 2>&1 || { echo "[setup] configurable-http-proxy failed to install" >&2; ok=0; }
  else
    echo "[setup] npm missing: the JupyterHub test skips" >&2
    ok=0
  fi
fi

# Only a complete install is remembered; a partial one is retried next time.
[[ $ok -eq 1 ]] && touch "$STAMP"
exit 0
