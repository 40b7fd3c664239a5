#!/usr/bin/env bash
# Build the one-folder frozen nexus-app (dist/nexus-app/nexus-app) from the installed project,
# then smoke-test it: --help, a frozen gateway serving a chat from a frozen worker, and the
# terminal app under tmux. Needs the project installed with its build extra:
#   pip install -e '.[build]'
set -euo pipefail
cd "$(dirname "$0")/.."
python -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/nexus-app.spec
python -m tests.support.frozen_smoke dist/nexus-app/nexus-app "$@"
