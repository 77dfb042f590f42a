"""The ``vggsim`` command. Exit codes: 0 ok, 1 bad input or a failed check, 2 usage or a missing extra.

One module per command; each registers its parser and its handler (``set_defaults(handler=run)``).
Handlers parse, call the library and format: no collection logic lives here.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from vggsim import config
from vggsim.version import __version__
from vggsim.validate import ArgumentError
from vggsim.errors import MissingExtraError, VggsimError, one_line
from vggsim.cli import bench, compare, dedup, doctor, embed, evaluate, export, index, search, serve, store
from vggsim.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, HelpFormatter, UsageError

Handler = Callable[[argparse.Namespace], int]
COMMANDS = (export, compare, doctor, bench, embed, search, index, dedup, evaluate, store, serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vggsim", description="VGG16 image similarity without TensorFlow.", formatter_class=HelpFormatter,
        epilog="Exit codes: 0 ok, 1 bad input or failed check, 2 usage or missing extra.")
    parser.add_argument("--version", action="version", version=f"vggsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"vggsim: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Run as a program (``argv`` None: the ``vggsim`` script, ``python -m vggsim``), the process
    ends right after the command, without interpreter finalization: onnxruntime's and
    pyarrow's thread pools, torn down in an arbitrary order at exit, sometimes abort the
    process ("terminate called without an active exception", exit 134) after the output was
    already written. Everything the command opened is closed by then; streams are flushed.
    """
    code = _main(argv)
    if argv is None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        except OSError as exc:  # stdout on a full disk: the output is lost, so say so
            print(f"vggsim: error: could not write the output ({exc.strerror or exc})", file=sys.stderr)
            code = code or EXIT_FAILED
        try:
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)
    return code


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command named on the line: ``vggsim dedup`` -> dedup's."""
    current = parser
    while True:
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or name not in sub.choices:
            return current
        current = sub.choices[name]


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser, so its usage (and its options) are shown
        command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}"[:500])
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    warnings.showwarning = _show_warning
    # onnxruntime's process-wide logger prints every convolution engine cuDNN's search
    # rejects as an error; what matters reaches vggsim as an exception or a provider
    # fallback with its reason, so the command line keeps stderr for vggsim's own lines.
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    try:
        return handler(args)
    except (MissingExtraError, UsageError, ArgumentError) as exc:  # ArgumentError: the library refused a value
        print(f"vggsim: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except VggsimError as exc:
        print(f"vggsim: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("vggsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout's reader went away (| head): nothing more to say, and no error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OSError, MemoryError) as exc:
        if config.debug():
            raise
        detail = getattr(exc, "strerror", None) or exc
        where = getattr(exc, "filename", None)
        print(f"vggsim: error: {f'{where}: ' if where else ''}{detail}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line, and the traceback on request
        if config.debug():
            raise
        print(f"vggsim: internal error: {type(exc).__name__}: {exc} (set VGGSIM_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILED


__all__ = ["build_parser", "main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]
