#!/usr/bin/env bash
# The main job, end to end on embedded defaults: installs what it needs, then
# runs `recsys run` on ./data (or $RECSYS_DATA_DIR). Extra arguments go to
# `recsys run`, e.g. --source online-retail.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="" source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec recsys run "$@"
