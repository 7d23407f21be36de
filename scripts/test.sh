#!/usr/bin/env bash
# Install what is missing, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest (e.g. -k sse -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"  # from the editable link tree, where every module has its `tuneforge.` name
(cd build/__editable__.tuneforge-* && ../../.venv/bin/mypy --config-file ../../pyproject.toml -p tuneforge)
echo "== pytest"; .venv/bin/python -m pytest -p no:cacheprovider "$@"
