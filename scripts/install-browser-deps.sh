#!/usr/bin/env bash
# Browser-side test dependencies of tests/auth (idempotent; safe to run before every test run):
#   - Debian's chromium at /usr/bin/chromium (Playwright drives it through executable_path; no browser download)
#   - the Python `playwright` package (driver only) and the other auth test libraries into .venv
#   - the npm `fhirclient` package into tests/auth/node/ from its committed package-lock.json
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
test -x /usr/bin/chromium || { echo "chromium is missing at /usr/bin/chromium" >&2; exit 1; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if [ -x .venv/bin/python ]; then
  # Never let playwright fetch its own browsers: we use Debian's chromium.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/python -m pip install --quiet \
    "playwright>=1.40" "argon2-cffi>=23.1" "requests>=2.31"
fi

cd tests/auth/node
if [ -f package-lock.json ]; then
  stamp="node_modules/.dmp-lock-sha256"
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ -d node_modules/fhirclient ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0  # already installed from this lock file
  fi
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
else
  npm install --no-audit --no-fund --loglevel=error
fi
