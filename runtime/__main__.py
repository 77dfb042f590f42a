"""``python -m vggsim``: the same as the ``vggsim`` command."""

from vggsim.cli import main

raise SystemExit(main())
