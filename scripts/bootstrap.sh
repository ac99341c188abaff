#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with everything ShowMaker needs.
# Idempotent: reinstalls only when pyproject.toml changed since the last successful install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

py="${SHOWMAKER_PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "ShowMaker needs Python 3.11 (bpy 5.0.1 and mediapipe 0.10.21 are built for it)." >&2
  echo "Install python3.11, or point SHOWMAKER_PYTHON at one." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "[showmaker] creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi

stamp=.venv/.showmaker-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[showmaker] installing dependencies into .venv (first run: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU build where one is on offer.
  .venv/bin/python -m pip install --quiet -e ".[all]"
  touch "$stamp"
fi
