"""``vggsim compare A B``: the cosine similarity of two images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vggsim.cli.common import (
    add_model_args,
    add_parser,
    build_embedder,
    caveat,
    output_path,
    plot_title,
    print_json,
    write_output,
)


def register(sub: Any) -> None:
    p = add_parser(sub, "compare", help="cosine similarity of two images",
                   description="Print the cosine similarity of two images' embeddings (1.0: identical).")
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object on stdout instead of the score")
    p.add_argument("--plot", metavar="OUT.png", help="write both images side by side with the score "
                   "(folders are created; default: no plot)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plot = output_path(args.plot, "--plot")
    embedder = build_embedder(args)
    random_weights = embedder.manifest.random_weights
    score = embedder.similarity(args.a, args.b)
    if plot is not None:
        from vggsim.tools.plot import contact_sheet

        title = plot_title(f"cosine similarity {score:.4f}  ({embedder.provider})", random_weights)
        write_output(plot, lambda out: contact_sheet(
            [[(args.a, Path(args.a).name), (args.b, Path(args.b).name)]], out, title=title), "--plot")
    if args.json:
        print_json({"score": score, "a": args.a, "b": args.b, "provider": embedder.provider,
                    "model_sha256": embedder.model_sha256, **caveat(random_weights)})
    else:
        print(f"{score:.6f}")
    return 0
