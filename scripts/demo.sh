#!/usr/bin/env bash
# One command for a new user: set up .venv, then run the demo on the embedded synthetic clip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/showmaker" demo "$@"
