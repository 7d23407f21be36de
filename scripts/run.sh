#!/usr/bin/env bash
# Install what is missing, then run the embedded stack: http://127.0.0.1:8000
# Extra arguments go to `tuneforge up` (e.g. --port 8080 --data-dir /srv/tuneforge).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tuneforge up --data-dir "${TUNEFORGE_DATA_DIR:-$PWD/data}" "$@"
