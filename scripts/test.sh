#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite on the CPU. pytest's exit code 5 (no tests ran) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed"; exit 1; }
.venv/bin/ruff check specgen modalities specgen_apps tests scripts || { echo "lint failed"; exit 1; }
.venv/bin/python -m pytest tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests ran: that is a failure"; exit 1; fi
exit "$rc"
