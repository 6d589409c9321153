#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which the weir binary embeds:
# its npm packages from the lock file (once), then TypeScript's check and
# Vite's build — skipped when nothing it is built from changed, so the
# binary is not rebuilt for nothing. Needs Node.js 20.19+ or 22.12+ with
# npm. `--optional` (the build): without such a Node.js, warn and build the
# binary without the dashboard (it then says at / how to add it).
set -euo pipefail
cd "$(dirname "$0")/../web"
optional=false
[ "${1:-}" = --optional ] && optional=true
missing() {
    if $optional; then
        echo "warning: $1; building weir without the dashboard" >&2
        exit 0
    fi
    echo "$1" >&2
    exit 1
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing "the dashboard needs Node.js 20.19+ or 22.12+ with npm (Debian's nodejs is older: see nodejs.org or NodeSource)"
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)||(a===20&&b>=19)?0:1)'; then
    missing "the dashboard needs Node.js 20.19+ or 22.12+ (this is $(node --version))"
fi
# Installed again only when the lock file changed.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.weir-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.weir-lock
fi
source=$(find src index.html package-lock.json tsconfig.json vite.config.ts -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
if [ -f dist/index.html ] && [ "$(cat dist/.weir-source 2>/dev/null)" = "$source" ]; then
    exit 0
fi
npm run --silent build
echo "$source" > dist/.weir-source
