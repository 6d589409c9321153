#!/usr/bin/env bash
# The Python tools the REST API tests use — schemathesis (schema-driven
# fuzzing) and openapi-spec-validator — in a virtual environment at
# target/py, installed from PyPI once (pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
py=target/py
want="schemathesis==4.32.5 openapi-spec-validator==0.9.0"
if [ -x "$py/bin/python" ] && [ "$(cat "$py/.weir-tools" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
rm -rf "$py"
python3 -m venv "$py"
"$py/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$py/.weir-tools"
