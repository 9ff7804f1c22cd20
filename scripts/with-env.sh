#!/usr/bin/env bash
# Runs a command inside the project's environment: sets up (idempotently) the
# cached libtorch venv and exports LIBTORCH_USE_PYTORCH, PATH and friends.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
eval "$("$here/setup.sh" --env)"
exec "$@"
