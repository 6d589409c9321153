#!/usr/bin/env bash
# The Python tools the tests use — schemathesis (schema-driven
# fuzzing), openapi-spec-validator and moto (an S3 server for the
# object-storage checkpoint tests) — in a virtual environment at
# target/py, installed from PyPI once (pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
py=target/py
want="schemathesis==4.32.5 openapi-spec-validator==0.9.0 moto[server]==5.2.5"
if [ -x "$py/bin/python" ] && [ "$(cat "$py/.weir-tools" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
rm -rf "$py"
python3 -m venv "$py"
"$py/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$py/.weir-tools"
