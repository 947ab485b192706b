#!/usr/bin/env bash
# The test command: fast default suite (slow tests are marked and deselected; add `-m slow` to run them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
