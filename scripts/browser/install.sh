#!/usr/bin/env bash
# What the browser test needs: Debian's Chromium (installed with apt-get when missing and this
# runs as root, as CI does) and the pinned WebDriver-free client (playwright-core) from
# package-lock.json. Idempotent and quiet when everything is there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Chromium (Debian packages chromium, chromium-driver)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
  else
    echo "the dashboard test needs Chromium at $chromium: sudo apt-get install chromium chromium-driver (or set CHROMIUM)" >&2
    exit 1
  fi
fi
command -v node >/dev/null || { echo "the dashboard test needs Node.js (node, npm)" >&2; exit 1; }
stamp="$here/node_modules/.lock.sha"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error > /dev/null)
  echo "$want" > "$stamp"
fi
