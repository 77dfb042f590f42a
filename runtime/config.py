"""Every environment variable vggsim reads, in one place: its name, what it means, its default.

Other modules ask here instead of reading ``os.environ`` themselves, so the list below is the
whole of vggsim's configuration by environment (the CLI's options override each of them).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the model folder when none is given (--model); default models/vgg16
MODEL = "VGGSIM_MODEL"
#: where compiled graphs and other caches go; default $XDG_CACHE_HOME/vggsim, else ~/.cache/vggsim
CACHE_DIR = "VGGSIM_CACHE_DIR"
#: `vggsim serve`'s bearer token when --token-file is not given; unset: no auth
TOKEN = "VGGSIM_SERVE_TOKEN"
#: 1: the CLI prints the traceback of an internal error instead of one line
DEBUG = "VGGSIM_DEBUG"
#: seconds a file's verified sha256 is trusted before it is hashed again (vggsim.store.checksum); default 3600
REVERIFY_S = "VGGSIM_REVERIFY_S"

DEFAULT_MODEL_DIR = Path("models") / "vgg16"
DEFAULT_REVERIFY_S = 3600.0
VARIABLES = (MODEL, CACHE_DIR, TOKEN, DEBUG, REVERIFY_S)


def model_dir() -> Path:
    return Path(os.environ.get(MODEL) or DEFAULT_MODEL_DIR)


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vggsim"


def token() -> str | None:
    return os.environ.get(TOKEN) or None


def debug() -> bool:
    return os.environ.get(DEBUG, "") not in ("", "0")


def reverify_s() -> float:
    """$VGGSIM_REVERIFY_S as a number of seconds >= 0; the default when unset or not such a number."""
    try:
        value = float(os.environ.get(REVERIFY_S) or DEFAULT_REVERIFY_S)
    except ValueError:
        return DEFAULT_REVERIFY_S
    return value if value >= 0 else DEFAULT_REVERIFY_S
