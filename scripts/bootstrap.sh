#!/usr/bin/env bash
# Creates .venv with the project installed (EXTRAS: "" or "dev"); re-installs
# only when pyproject.toml changed. Sourced by quickstart.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RECSYS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-}"

# pyproject.toml's requires-python, checked before a venv is made with the interpreter
# (pip would refuse to install into it, and the venv would stay for the next run)
NEEDS_311='import sys; sys.exit(sys.version_info < (3, 11))'
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "$NEEDS_311"; then
  echo "error: $VENV holds $("$VENV/bin/python" -V 2>&1); the project needs Python >= 3.11:" \
    "remove $VENV and run again with PYTHON=python3.11 (or newer)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c "$NEEDS_311" 2>/dev/null; then
    echo "error: PYTHON=$PYTHON is not Python >= 3.11 ($("$PYTHON" -V 2>&1));" \
      "set PYTHON to one, e.g. PYTHON=python3.11" >&2
    exit 2
  fi
  echo "creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${EXTRAS:-base}"
if [ ! -f "$stamp" ]; then
  echo "installing the project and its dependencies (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  spec="$ROOT"
  [ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m pip install --quiet -e "$spec"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
