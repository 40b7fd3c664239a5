"""The frozen program's entry point: the same `nexus-app` command as the installed one."""

import sys

from nexus_app.cli import main

if __name__ == "__main__":
    sys.exit(main())
