#!/usr/bin/env bash
# Set up the test bed (scripts/testbed.sh) and run the whole test suite:
#   scripts/test.sh                 # everything, with pytest's defaults from pyproject.toml
#   scripts/test.sh -m unit         # any pytest arguments pass through
# Exits with pytest's code; "no tests collected" (pytest's 5) counts as a failure.
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/testbed.sh"

# These machines contain /.dockerenv, so testcontainers would think it runs inside a
# container; and its reaper image cannot be pulled (the fixtures clean up instead).
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_CONNECTION_MODE=docker_host
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1

status=0
"$REPO_ROOT/.venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
	echo "test.sh: error: pytest collected no tests" >&2
	exit 1
fi
exit "$status"
