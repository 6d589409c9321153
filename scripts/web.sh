#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which the weir binary embeds:
# its npm packages from the lock file (once), then TypeScript's check and
# Vite's build. Needs Node.js 20.19+ or 22.12+ and npm.
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "the dashboard needs Node.js 20.19+ or 22.12+ with npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)||(a===20&&b>=19)?0:1)'; then
    echo "the dashboard needs Node.js 20.19+ or 22.12+ (this is $(node --version))" >&2
    exit 1
fi
# Installed again only when the lock file changed.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.weir-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.weir-lock
fi
npm run --silent build
