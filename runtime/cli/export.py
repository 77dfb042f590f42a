"""``vggsim export``: the Keras VGG16 recipe to ONNX, with a manifest."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from vggsim.errors import VggsimError
from vggsim.export.int8_settings import ISAS
from vggsim.images.preprocess import PreprocessSpec
from vggsim.cli.common import add_parser, int_range, log


def register(sub: Any) -> None:
    p = add_parser(sub, "export", help="export the Keras VGG16 recipe to ONNX (needs vggsim[export])",
                   description="Build VGG16(include_top=False, pooling='max') in Keras, convert it with "
                   "tf2onnx, check parity against Keras and write OUT/model.onnx and OUT/manifest.json.")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: models/vgg16, or models/vgg16-PRECISION for variants)")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (Keras's download and cache), PATH to a weights file, or random")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="seed for --weights random")
    p.add_argument("--normalization", choices=("caffe", "none"), default="caffe",
                   help="caffe: VGG16's preprocess_input folded into the graph; "
                   "none: raw 0-255 pixels, the recipe exactly as written")
    p.add_argument("--opset", type=int_range(13, 30), default=None, help="ONNX opset (default: 17)")
    p.add_argument("--photos", metavar="DIR", help="folder of real photos for the parity check "
                   "(default: the sample photos scikit-learn and scikit-image ship)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against Keras")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="int8 (static QDQ, calibrated on real photos) or fp16 (for GPUs) are derived "
                   "from a verified fp32 export and checked against it")
    p.add_argument("--isa", choices=ISAS, default=None,
                   help="with --precision int8: quantize with the settings chosen for this instruction set "
                        "(default: this CPU's; recorded in the manifest)")
    p.add_argument("--calibration", metavar="DIR", help="folder of real photos for int8 calibration "
                   "(default: half of the sample photos; the other half is held out)")
    p.add_argument("--exif-transpose", action="store_true",
                   help="record EXIF orientation handling on in the manifest's preprocessing")
    p.add_argument("--jpeg-draft", action="store_true",
                   help="record fast JPEG draft decoding in the manifest (not bit-identical)")
    p.set_defaults(handler=run)


def photos_in(folder: str | None, option: str = "--photos") -> list[Path] | None:
    """The .jpg/.jpeg/.png files under a folder, sorted; None when no folder is named."""
    if not folder:
        return None
    root = Path(folder)
    if not root.is_dir():
        raise VggsimError(f"{option} {folder}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def run(args: argparse.Namespace) -> int:
    from vggsim.export import export_model
    from vggsim.export.convert import DEFAULT_OPSET

    out = Path(args.out or ("models/vgg16" if args.precision == "fp32" else f"models/vgg16-{args.precision}"))
    spec = PreprocessSpec(exif_transpose=args.exif_transpose, jpeg_draft=args.jpeg_draft)
    options = dict(weights=args.weights, seed=args.seed, normalization=args.normalization,
                   opset=args.opset or DEFAULT_OPSET, verify=not args.no_verify,
                   photos=photos_in(args.photos), spec=spec, log=log)
    if args.precision == "fp32":
        export_model(out=out, **options)
    else:
        from vggsim.export.variants import export_variant

        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=out.parent) as fp32_dir:
            export_model(out=fp32_dir, **options)
            export_variant(Path(fp32_dir), out, args.precision, photos_in(args.calibration, "--calibration"), log=log,
                           isa=args.isa)
        log(f"wrote the {args.precision} model to {out}")
    if args.weights == "random":
        log("warning: random weights: scores from this model are not meaningful")
    return 0
