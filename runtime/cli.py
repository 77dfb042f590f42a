"""The ``vggsim`` command. Exit codes: 0 ok, 1 bad input or a failed check, 2 usage or a missing extra."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any
from collections.abc import Callable, Sequence

from . import __version__
from .errors import MissingExtraError, VggsimError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
Handler = Callable[[argparse.Namespace], int]


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model folder made by `vggsim export` "
                        "(default: $VGGSIM_MODEL or models/vgg16)")
    parser.add_argument("--providers", default="auto",
                        help="auto (CUDA if usable, else CPU), cpu, cuda (exact float32), cuda-tf32 "
                        "(faster, TF32 convolutions), or a comma-separated list of onnxruntime "
                        "provider names (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: the CPUs this process may use)")
    parser.add_argument("--strict", action="store_true",
                        help="fail if the requested provider is not the one that runs")
    parser.add_argument("--exif-transpose", action="store_true",
                        help="apply EXIF orientation before resizing (off by default, as in Keras)")
    parser.add_argument("--cache-optimized", action="store_true",
                        help="save onnxruntime's optimised graph beside the model for faster starts")


def _export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export the Keras VGG16 recipe to ONNX (needs vggsim[export])",
                       description="Build VGG16(include_top=False, pooling='max') in Keras, convert "
                       "it with tf2onnx, check parity against Keras and write OUT/model.onnx and "
                       "OUT/manifest.json.")
    p.add_argument("--out", default=None,
                   help="output folder (default: models/vgg16, or models/vgg16-PRECISION for variants)")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (Keras's download and cache), PATH to a weights file, or random")
    p.add_argument("--seed", type=int, default=0, help="seed for --weights random (default 0)")
    p.add_argument("--normalization", choices=("caffe", "none"), default="caffe",
                   help="caffe: VGG16's preprocess_input folded into the graph (default); "
                   "none: raw 0-255 pixels, the recipe exactly as written")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--photos", help="folder of real photos for the parity check "
                   "(default: the sample photos scikit-learn and scikit-image ship)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against Keras")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp32 (default); int8 (static QDQ, calibrated on real photos) or fp16 (for GPUs) "
                   "are derived from a verified fp32 export and checked against it")
    p.add_argument("--calibration", help="folder of real photos for int8 calibration "
                   "(default: half of the sample photos; the other half is held out)")
    p.add_argument("--exif-transpose", action="store_true",
                   help="record EXIF orientation handling on in the manifest's preprocessing")
    p.add_argument("--jpeg-draft", action="store_true",
                   help="record fast JPEG draft decoding in the manifest (not bit-identical)")
    p.set_defaults(handler="export")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vggsim", description="VGG16 image similarity without TensorFlow.",
        epilog="Exit codes: 0 ok, 1 bad input or failed check, 2 usage or missing extra.")
    parser.add_argument("--version", action="version", version=f"vggsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _export_parser(sub)

    p = sub.add_parser("compare", help="cosine similarity of two images")
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the score")
    p.add_argument("--plot", metavar="OUT.png", help="write both images side by side with the score")
    p.set_defaults(handler="compare")

    p = sub.add_parser("doctor", help="versions, providers, threads, GPU and the model found")
    p.add_argument("--model", help="model folder (default: $VGGSIM_MODEL or models/vgg16)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler="doctor")

    p = sub.add_parser("bench", help="measure latency and throughput on this machine")
    p.add_argument("--model", action="append", help="model folder; repeat to compare variants "
                   "(default: $VGGSIM_MODEL or models/vgg16)")
    p.add_argument("--keras", action="store_true", help="the Keras recipe side by side (needs vggsim[export])")
    p.add_argument("--providers", default="auto", help="auto, cpu, cuda or cuda-tf32 (default auto)")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--threads", default=None, help="comma-separated thread counts to sweep (default: 1 and all usable)")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per figure (default 10)")
    p.add_argument("--images", help="folder of images to use (default: the sample photos)")
    p.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="latency per image against batch size (vggsim[plot])")
    p.set_defaults(handler="bench")

    from .collection_cli import add_collection_parsers

    add_collection_parsers(sub, _add_model_args)
    return parser


def _handler(name: str) -> Handler:
    from . import collection_cli, commands

    for module in (commands, collection_cli):
        found = getattr(module, f"cmd_{name}", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
    raise LookupError(name)


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"vggsim: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    warnings.showwarning = _show_warning
    # onnxruntime's process-wide logger prints every convolution engine cuDNN's search
    # rejects as an error; what matters reaches vggsim as an exception or a provider
    # fallback with its reason, so the command line keeps stderr for vggsim's own lines.
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    try:
        return _handler(args.handler)(args)
    except MissingExtraError as exc:
        print(f"vggsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VggsimError as exc:
        print(f"vggsim: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("vggsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
