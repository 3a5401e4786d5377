"""`python -m plankton_stream` is the same as the `plankton-stream` command."""

from plankton_stream.cli import main

raise SystemExit(main())
