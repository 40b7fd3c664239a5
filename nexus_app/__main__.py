"""`python -m nexus_app` runs the command line."""

from nexus_app.cli import main

raise SystemExit(main())
