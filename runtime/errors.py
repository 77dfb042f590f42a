"""The exceptions vggsim raises. Every one says what failed and what to do next."""

from __future__ import annotations

import os
import unicodedata

#: Names longer than this are shortened in messages (a 10 MB line of a --from list must not
#: become a 10 MB error message); results and the store keep the exact name.
SHORT_NAME_LIMIT = 200


def display_name(text: str) -> str:
    """A name as valid UTF-8 text: bytes that are not UTF-8 (surrogate escapes) shown as ``\\xNN``.

    The one rule for the store's display ``path`` column and for names the CLI prints.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def one_line(text: str) -> str:
    """``text`` with control, format and line-separator characters escaped (``\\n``, ``\\x1b``,
    ``\\u202e``...): a name echoed in a message cannot split it into lines, move a terminal's cursor
    or reorder what it shows."""
    out = []
    for c in text:
        if c in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[c])
        elif unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def shown_name(name: str) -> str:
    """The one rule for showing a file name in text (CLI output, error messages, the service's errors):
    :func:`display_name`'s ``\\xNN`` for bytes that are not UTF-8, then :func:`one_line`. Results
    and the store keep the exact name."""
    return one_line(display_name(name)) if name else name


def short_name(name: str) -> str:
    """``name`` shown (:func:`shown_name`) for a message: its first 150 and last 50 characters when it is very long."""
    name = shown_name(name)
    if len(name) <= SHORT_NAME_LIMIT:
        return name
    return f"{name[:150]}\u2026{name[-50:]} ({len(name):,} characters)"


class VggsimError(Exception):
    """Base class of every error vggsim raises on purpose."""


class ImageError(VggsimError, ValueError):
    """An input could not be turned into a model input.

    ``source`` names the input (a path, ``<bytes>``, ``<array>``...), ``kind`` is a short
    machine-readable cause (``not_found``, ``empty``, ``not_an_image``, ``truncated``,
    ``too_large``, ``format_refused``, ``decode_error``, ``bad_array``, ...), and
    ``reason`` says it in words.
    """

    def __init__(self, source: str, kind: str, reason: str) -> None:
        self.source = source
        self.kind = kind
        self.reason = reason
        super().__init__(f"{short_name(source)}: {reason}")


class ModelError(VggsimError, ValueError):
    """The model folder is missing, incomplete or does not match its manifest."""


class ProviderError(VggsimError, RuntimeError):
    """The requested execution provider is unavailable or is not the one running."""


class ArgumentError(VggsimError, ValueError):
    """A library argument is out of range or of the wrong kind; the message names it and
    what to pass instead. A ValueError for library callers, exit 2 on the command line."""


def require_list(name: str, value: object, of: str) -> None:
    """ArgumentError if ``value`` is one path (str, bytes, os.PathLike) where a list is expected:
    iterating a string goes character by character, and "/" alone is the root folder."""
    if isinstance(value, (str, bytes, bytearray, os.PathLike)):
        raise ArgumentError(f"{name} is a list of {of}; got a {type(value).__name__} ({short_name(repr(value))}): "
                            "wrap it in a list")
    if value is None or not hasattr(value, "__iter__"):
        raise ArgumentError(f"{name} is a list of {of}; got {type(value).__name__}")


class StoreError(VggsimError, ValueError):
    """An embedding store is invalid or was made by a different model or preprocessing."""


class MissingExtraError(VggsimError, ImportError):
    """An optional dependency is missing; the message holds the pip command that adds it."""

    def __init__(self, extra: str, feature: str, missing: str, broken: str | None = None) -> None:
        self.extra = extra
        self.pip_command = pip_command(extra)
        if broken is None:
            super().__init__(
                f"{feature} needs the '{extra}' extra ({missing} is not installed); install it with: {self.pip_command}"
            )
        else:  # installed, but one of its own dependencies is missing or too old
            super().__init__(
                f"{feature} needs the '{extra}' extra: {missing} is installed but does not import ({broken}); "
                f"reinstall it with: {self.pip_command}"
            )


def _direct_url() -> dict[str, object] | None:
    """PEP 610's direct_url.json of the installed vggsim distribution (None if absent)."""
    import importlib.metadata
    import json

    # Every distribution named vggsim on the path, not only the first: a build leaves a
    # vggsim.egg-info in the checkout, which shadows the installed one when the checkout is
    # the working directory, and it has no direct_url.json.
    for dist in importlib.metadata.distributions(name="vggsim"):
        try:
            text = dist.read_text("direct_url.json")
            data = json.loads(text) if text else None
        except (ValueError, OSError):
            continue
        if isinstance(data, dict):
            return data
    return None


def pip_command(extra: str) -> str:
    """The pip command that adds ``extra`` to vggsim as it was installed.

    vggsim is on no package index, so ``pip install 'vggsim[extra]'`` only works where an
    index mirror carries it: installed from a local checkout (a ``file://`` URL in
    direct_url.json), the command names that checkout, editable when it was; otherwise the
    index form is the best guess left.
    """
    import shlex
    from urllib.parse import unquote, urlparse

    data = _direct_url()
    url = data.get("url") if data else None
    if isinstance(url, str) and url.startswith("file://"):
        folder = unquote(urlparse(url).path)
        info = data.get("dir_info") if data else None
        editable = isinstance(info, dict) and bool(info.get("editable"))
        return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{folder}[{extra}]')}"
    return f"pip install 'vggsim[{extra}]'"


#: Error kinds that say nothing lasting about a file (it was being written, a decode ran out
#: of time, the disk was full...): a later ``embed`` retries such a file even if unchanged.
RETRYABLE_ERROR_KINDS: frozenset[str] = frozenset({"changed", "timeout", "unreadable", "internal", "disk_full"})


class RandomWeightsWarning(UserWarning):
    """The model was exported with random weights: its scores mean nothing."""


def require(module: str, extra: str, feature: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # "fastapi is not installed" would be wrong when fastapi is there and its own dependency
        # is not (on a GPU machine fastapi 0.165 lacked opentelemetry-api): name the real cause.
        if isinstance(exc, ModuleNotFoundError) and (exc.name or module).split(".")[0] == module.split(".")[0]:
            raise MissingExtraError(extra, feature, module) from exc
        raise MissingExtraError(extra, feature, module, broken=str(exc)) from exc
