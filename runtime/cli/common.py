"""What every command shares: the model flags, numeric validators, output helpers, caveats.

Validators run at parse time, so nonsense (``-k 0``, ``--threshold nan``) is refused with
exit 2 before a model is loaded or a store is touched.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vggsim.errors import VggsimError, display_name, shown_name

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Said wherever a random-weight model's output appears (text, JSON, plots).
RANDOM_WEIGHTS_NOTE = "random-weight model: these scores are not meaningful (export with --weights imagenet for real use)"


class UsageError(VggsimError):
    """A command line that cannot be run as given; exit 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not already say its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return text if "required" in text else f"{text} (required)"
        if "default" in text:
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.default is None:  # the help text must say it; tests/test_cli.py checks every option
            return text
        shown = "off" if action.default is False else "on" if action.default is True else "%(default)s"
        return f"{text} (default: {shown})"


def add_parser(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand parser with the shared formatter."""
    parser: argparse.ArgumentParser = sub.add_parser(name, formatter_class=HelpFormatter, **kw)
    return parser


# -- numeric validators: each returns an argparse ``type=`` callable --------------------------

def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bound}")
        return value

    return parse


def postgres_table(text: str) -> str:
    """A usable PostgreSQL table name for vggsim's images (``vggsim.postgres.connection.table_name``'s rule)."""
    from vggsim.postgres.connection import table_name

    try:
        return table_name(text)
    except VggsimError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_float(high: float | None = None, inclusive_high: bool = True) -> Callable[[str], float]:
    """A finite number > 0 (and <= high when given)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0 or (high is not None and value > high):
            bound = f"in (0, {high}]" if high is not None else "finite and > 0"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bound}")
        return value

    return parse


def int_list(low: int, high: int) -> Callable[[str], list[int]]:
    """Comma-separated whole numbers, each in [low, high]."""
    one = int_range(low, high)

    def parse(text: str) -> list[int]:
        values = [one(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("needs at least one number")
        return values

    return parse


MAX_BATCH = 4096      # a batch of 4096 224x224 RGB float32 inputs is 2.4 GB already
MAX_K = 1_000_000     # results are held in memory; more is never what a person meant
threshold_type = positive_float(1.0)


# -- the model flags ----------------------------------------------------------------------------

def add_model_args(parser: argparse.ArgumentParser, model_help: str | None = None) -> None:
    """--model, --providers, --threads, --strict, --exif-transpose, --cache-optimized, --profile."""
    parser.add_argument("--model", metavar="DIR", help=model_help or "model folder made by `vggsim export` "
                        "(default: $VGGSIM_MODEL or models/vgg16)")
    parser.add_argument("--providers", default="auto",
                        help="auto (CUDA if usable, else CPU), cpu, cuda (exact float32), cuda-tf32 "
                        "(faster, TF32 convolutions), openvino-bf16 (bfloat16 on the CPU's AMX/AVX512_BF16 units, "
                        "needs vggsim[openvino]), openvino-cpu (OpenVINO at f32; int8 models on AMX/VNNI), or a "
                        "comma-separated list of onnxruntime provider names")
    parser.add_argument("--threads", type=int_range(1, 4096), default=None,
                        help="CPU threads, >= 1 (default: the CPUs this process may use)")
    parser.add_argument("--strict", action="store_true",
                        help="fail if the requested provider is not the one that runs")
    parser.add_argument("--exif-transpose", action="store_true",
                        help="apply EXIF orientation before resizing (Keras does not; a store made "
                        "without it refuses queries made with it)")
    parser.add_argument("--cache-optimized", action="store_true",
                        help="save onnxruntime's optimised graph beside the model for faster starts")
    add_profile_arg(parser)


def add_profile_arg(parser: argparse.ArgumentParser) -> None:
    """--profile: the session profile (vggsim.model.profiles); choices checked at parse time."""
    from vggsim.model.profiles import PROFILES

    parser.add_argument("--profile", choices=list(PROFILES), default="default",
                        help="session settings: default, or edge for small devices (less memory, same vectors; "
                        "saves the optimised graph beside the model or in ~/.cache/vggsim on first use)")


def model_choices(args: argparse.Namespace) -> tuple[Any, Any]:
    """The providers and the preprocessing spec (None: the manifest's) the model flags ask for."""
    from vggsim.model.manifest import read_manifest

    providers: Any = args.providers
    if "," in providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    spec = None
    if args.exif_transpose:
        spec = dataclasses.replace(read_manifest(args.model, verify=False).preprocess, exif_transpose=True)
    return providers, spec


def build_embedder(args: argparse.Namespace, max_pixels: int | None = None, fixed_batch: int | None = None) -> Any:
    """The Embedder the flags describe, built once with constructor arguments (``fixed_batch``:
    see :class:`vggsim.Embedder`)."""
    from vggsim.images.decode import DEFAULT_MAX_PIXELS
    from vggsim.model.embedder import Embedder

    providers, spec = model_choices(args)
    return Embedder(args.model, providers=providers, threads=args.threads, strict=args.strict, spec=spec,
                    max_pixels=max_pixels or DEFAULT_MAX_PIXELS, cache_optimized=args.cache_optimized,
                    profile=args.profile, fixed_batch=fixed_batch)


# -- output -------------------------------------------------------------------------------------

def output_path(value: str | None, option: str) -> Path | None:
    """Check an --out-style path before any work: its folder is created; a file in the way is refused."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{option} {value}: is a folder; name a file")
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{option} {value}: {ancestor} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {value}: cannot create {parent} ({exc.strerror or exc})") from None
    return path


def write_output(path: Path, write: Callable[[Path], object], option: str) -> None:
    """Run ``write(path)`` and say so on stderr; an OSError (full disk, permissions) becomes one line, exit 1."""
    try:
        write(path)
    except OSError as exc:
        raise VggsimError(f"{option} {path}: could not write ({exc.strerror or exc})") from None
    log(f"wrote {display_path(str(path))} ({option})")


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, names made lossless and valid for any parser (:func:`json_safe`)."""
    print(json.dumps(json_safe(data), indent=2, ensure_ascii=True, default=str))


def log(message: str) -> None:
    print(f"vggsim: {message}", file=sys.stderr)


def caveat(random_weights: bool | None) -> dict[str, Any]:
    """The keys every --json output carries about the model's weights."""
    out: dict[str, Any] = {"random_weights": random_weights}
    if random_weights:
        out["note"] = RANDOM_WEIGHTS_NOTE
    return out


def plot_title(title: str, random_weights: bool | None) -> str:
    return f"RANDOM WEIGHTS, scores not meaningful: {title}" if random_weights else title


# -- names in output: the one place that decides how a file name is printed ----------------------



def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: the name's bytes are not valid UTF-8
        return False
    return True


def display_path(path: str) -> str:
    """A name for text output, on one line: :func:`vggsim.errors.shown_name`, the rule the service's
    messages and every error message follow too."""
    return shown_name(path)


def _name_bytes(text: str) -> bytes:
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "surrogatepass")


def json_safe(data: Any) -> Any:
    """``data`` with every string that is not valid UTF-8 (a name with undecodable bytes) made
    lossless for any JSON parser: in a mapping, ``KEY`` becomes the display text (``\\xNN``
    escapes, as the store's display column) and ``KEY_bytes_b64`` the exact name, base64 of
    its bytes; inside a list, the display text only. Valid names pass unchanged (JSON escapes
    control characters itself)."""
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and not _is_utf8(value):
                out[key] = display_name(value)
                out[f"{key}_bytes_b64"] = base64.b64encode(_name_bytes(value)).decode("ascii")
            else:
                out[key] = json_safe(value)
        return out
    if isinstance(data, (list, tuple)):
        return [json_safe(item) for item in data]
    if isinstance(data, str) and not _is_utf8(data):
        return display_name(data)
    return data


