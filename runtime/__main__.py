"""``python -m vggsim``: the same as the ``vggsim`` command."""

from .cli import main

raise SystemExit(main())
