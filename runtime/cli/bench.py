"""``vggsim bench``: latency and throughput of one or more models on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vggsim import config
from vggsim.errors import VggsimError
from vggsim.cli.common import add_parser, add_profile_arg, caveat, int_list, int_range, log, output_path, print_json, write_output
from vggsim.cli.export import photos_in


def register(sub: Any) -> None:
    p = add_parser(sub, "bench", help="measure latency and throughput on this machine",
                   description="Measure cold start, per-stage latency, batch throughput and thread scaling.")
    p.add_argument("--model", action="append", metavar="DIR", help="model folder; repeat to compare variants "
                   "(default: $VGGSIM_MODEL or models/vgg16)")
    p.add_argument("--keras", action="store_true", help="the Keras recipe side by side (needs vggsim[export])")
    p.add_argument("--providers", default="auto", help="auto, cpu, cuda or cuda-tf32")
    add_profile_arg(p)
    p.add_argument("--batch-sizes", type=int_list(1, 1024), default=[1, 8], metavar="N,N",
                   help="comma-separated batch sizes, each 1-1024 (default: 1,8)")
    p.add_argument("--threads", type=int_list(1, 4096), default=None, metavar="N,N",
                   help="comma-separated thread counts to sweep (default: 1 and all usable)")
    p.add_argument("--rounds", type=int_range(1, 10_000), default=10, help="timed rounds per figure, >= 1")
    p.add_argument("--images", metavar="DIR", help="folder of images to use (default: the sample photos)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout "
                   "(the table goes to stderr)")
    p.add_argument("--out", metavar="OUT.json", help="also write the full report as JSON to this file "
                   "(folders are created; default: none)")
    p.add_argument("--plot", metavar="OUT.png", help="latency per image against batch size, needs vggsim[plot] "
                   "(folders are created; default: none)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from vggsim.tools.bench import run_bench, summary_lines, write_plot
    from vggsim.errors import require
    from vggsim.images.samples import sample_photos
    from vggsim.model.session import usable_cpus

    out, plot = output_path(args.out, "--out"), output_path(args.plot, "--plot")
    if plot is not None:  # say so before minutes of measuring, not after
        require("matplotlib", "plot", "The bench plot")
    photos = photos_in(args.images, "--images") or sample_photos()
    if not photos:
        raise VggsimError("bench needs images: pass --images DIR or install scikit-learn (it ships sample photos)")
    threads = args.threads or sorted({1, usable_cpus()})
    models = args.model or [str(config.model_dir())]
    report = run_bench(models, photos, args.batch_sizes, threads, args.rounds, args.keras, args.providers, args.profile)
    report.update(caveat(report["random_weights"]))  # the note every --json output carries for such a model
    if out is not None:
        write_output(out, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"), "--out")
    if plot is not None:
        write_output(plot, lambda p: write_plot(report, str(p)), "--plot")
    if args.json:
        print_json(report)
        for line in summary_lines(report):
            log(line)
    else:
        print("\n".join(summary_lines(report)))
    return 0
