"""``vggsim doctor``: versions, providers, threads, GPU, the model found and its dedup calibration."""

from __future__ import annotations

import argparse
from typing import Any

from vggsim.cli.common import RANDOM_WEIGHTS_NOTE, add_parser, add_profile_arg, print_json


def register(sub: Any) -> None:
    p = add_parser(sub, "doctor", help="versions, providers, threads, GPU and the model found",
                   description="Report what vggsim sees on this machine. Exit 1 when no usable model is found.")
    p.add_argument("--model", metavar="DIR", help="model folder (default: $VGGSIM_MODEL or models/vgg16)")
    add_profile_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vggsim.tools.doctor import dedup_lines, doctor_report

    report = doctor_report(args.model, args.profile)
    model = report["model"]
    if args.json:
        if model.get("random_weights"):
            model["note"] = RANDOM_WEIGHTS_NOTE
        print_json(report)
        return 1 if "error" in model else 0
    print(f"vggsim {report['vggsim']} on Python {report['python']} ({report['platform']})")
    for name, version in report["packages"].items():
        print(f"  {name:16} {version or '-'}")
    print(f"providers available: {', '.join(report['providers_available'])}")
    print(f"providers for auto:  {', '.join(report['providers_auto'])}")
    cpus = report["cpus"]
    print(f"CPUs: {cpus['usable']} usable of {cpus['os_cpu_count']}")
    gpu = report["gpu"]
    print(f"GPU: nvidia-smi {'found' if gpu['nvidia_smi'] else 'not found'}; "
          f"CUDA_VISIBLE_DEVICES={gpu['CUDA_VISIBLE_DEVICES']}")
    cpu = report["cpu_settings"]
    print(f"CPU matrix units: {', '.join(cpu['matrix_units']) or 'none found'}; "
          f"fastest named setting within tolerance here: {cpu['suggested']}")
    if "error" in model:
        print(f"model: {model['error']}")
        return 1
    for key, value in model.items():
        if key != "dedup":
            print(f"model {key}: {value}")
    if model.get("random_weights"):
        print(f"model note: {RANDOM_WEIGHTS_NOTE}")
    print("\n".join(dedup_lines(model.get("dedup"))))
    return 0
