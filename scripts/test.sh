#!/usr/bin/env bash
# Installs the project with its test tools, then runs ruff (lint and format check) and the whole suite.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="dev" source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
ruff check .
ruff format --check .
exec python -m pytest "$@"
