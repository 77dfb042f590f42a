"""``vggsim embed``: files, folders, globs and lists into a store (the library does the work)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from vggsim.images.decode import DEFAULT_MAX_PIXELS
from vggsim.errors import require, short_name
from vggsim.cli.common import (
    MAX_BATCH,
    RANDOM_WEIGHTS_NOTE,
    UsageError,
    add_model_args,
    add_parser,
    display_path,
    int_range,
    log,
    model_choices,
    positive_float,
    print_json,
)


def register(sub: Any) -> None:
    p = add_parser(sub, "embed", help="embed files, folders and globs into a store",
                   description="Embed images into STORE. Reruns embed only new or changed files (and retry "
                   "files whose last failure was passing: a timeout, a file being written). Exit 0 when every "
                   "listed file is embedded, 1 when some failed in this run or still fail from an earlier one "
                   "(each is recorded in the store and counted in the summary).")
    p.add_argument("inputs", nargs="*", help="files, folders (recursive) and globs; walks and globs skip "
                   "hidden entries and vggsim store folders (STORE itself, and any folder holding store.json "
                   "and commit.json), so a store kept inside the photo folder is never embedded")
    p.add_argument("--store", required=True, metavar="STORE", help="store folder (created if missing)")
    p.add_argument("--from", dest="list_file", metavar="FILE",
                   help="also read paths from FILE, one per line; '-' reads stdin (default: none)")
    p.add_argument("--all-files", action="store_true", help="in folders, try every file, not only image extensions")
    p.add_argument("--batch-size", type=int_range(1, MAX_BATCH), default=8,
                   help=f"images per model run, 1-{MAX_BATCH}")
    p.add_argument("--workers", type=int_range(1, 1024), default=None,
                   help="decode threads, >= 1 (default: the CPUs this process may use)")
    p.add_argument("--memory-budget", type=positive_float(), default=None, metavar="MB",
                   help="decoded pixel memory in flight, in MB; large images wait for room "
                   "(default: the pipeline's documented budget)")
    p.add_argument("--float16", action="store_true", help="store vectors as float16 (new stores only)")
    p.add_argument("--prune", action="store_true", help="mark stored files that no longer exist as deleted")
    p.add_argument("--retry-errors", action="store_true", help="also retry unchanged files that failed for good "
                   "(not an image, truncated...)")
    p.add_argument("--decode-timeout", type=positive_float(), default=60.0, metavar="SECONDS",
                   help="seconds before a stuck decode is abandoned and recorded as a timeout")
    p.add_argument("--max-pixels", type=int_range(1), default=None,
                   help="refuse images with more pixels, >= 1 (default: Pillow's decompression-bomb limit, 89478485)")
    p.add_argument("--commit-rows", type=int_range(1, 10_000_000), default=1024,
                   help="commit (make searchable) after this many files")
    p.add_argument("--commit-seconds", type=positive_float(), default=30.0, metavar="SECONDS",
                   help="commit at least this often during a long run")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and embed on a Ray cluster (pip install 'vggsim[ray]'): ADDRESS is 'auto', "
                   "HOST:PORT or ray://...; without it, $RAY_ADDRESS or a local Ray. Put --ray after the inputs "
                   "or write --ray=ADDRESS (default: off, embed in this process)")
    p.add_argument("--ray-actors", type=int_range(1, 4096), default=None, metavar="N",
                   help="with --ray: inference actors, one Embedder each (default: one per GPU, else 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary: only the failures")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (the progress bar "
                   "stays on stderr; --quiet drops it)")
    add_model_args(p)
    p.set_defaults(handler=run)


class ProgressBar:
    """A tqdm bar driven by the library's progress callback: total and ETA from the start."""

    def __init__(self) -> None:
        self._tqdm = require("tqdm", "store", "The progress bar")  # a missing extra: said before any work
        self._bar: Any = None

    def __call__(self, progress: Any) -> None:
        if self._bar is None:  # drawn at the first progress, after the model's load and its warnings
            self._bar = self._tqdm.tqdm(unit="img", desc="embedding", file=sys.stderr, dynamic_ncols=True)  # type: ignore[attr-defined]
        bar = self._bar
        if bar.total != progress.total:
            # Unchanged files are done before the run starts: count them as the bar's initial
            # position, so the rate and the ETA come from the files actually embedded.
            bar.total = progress.total
            bar.initial = bar.n = bar.last_print_n = progress.unchanged
            bar.start_t = bar.last_print_t = bar._time()
        # Files that failed before and are skipped as unchanged still fail: the bar counts them
        # from the start, as the summary does, instead of saying failed=0 until then.
        bar.set_postfix(failed=progress.failed + progress.still_failing, refresh=False)
        bar.update(progress.done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim embed")  # before the model loads: say so at once
    from vggsim.collection import embed_into_store
    from vggsim.cli.common import build_embedder

    if not args.inputs and not args.list_file and not args.prune:
        raise UsageError("embed: name files, folders or globs, or --from FILE (or --prune alone)")
    if args.ray is not None:
        from vggsim.ray.embed import import_ray

        import_ray()  # a missing extra: one line naming the pip command, exit 2, before any work
    bar = None if args.quiet else ProgressBar()  # on stderr: --json's stdout stays the JSON alone
    if args.ray is not None:
        return _finish(args, _run_on_ray(args, bar))
    embedder = build_embedder(args, max_pixels=args.max_pixels)
    memory_budget = None if args.memory_budget is None else int(args.memory_budget * 1024 * 1024)
    try:
        summary = embed_into_store(
            embedder, args.inputs, args.store, list_file=args.list_file, all_files=args.all_files,
            prune=args.prune, retry_errors=args.retry_errors, batch_size=args.batch_size, workers=args.workers,
            decode_timeout=args.decode_timeout, memory_budget=memory_budget, float16=args.float16,
            commit_rows=args.commit_rows, commit_seconds=args.commit_seconds, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return _finish(args, summary)


def _run_on_ray(args: argparse.Namespace, bar: Any) -> Any:
    """The same embed with decoding and inference on Ray (:func:`vggsim.ray.embed.embed_dataset`).

    --workers and --memory-budget do not apply: Ray schedules decode tasks by CPUs and bounds
    what is in flight by its object store. --decode-timeout does not apply either.
    """
    from vggsim.ray.embed import embed_dataset

    providers, spec = model_choices(args)
    # Ray's driver prints cluster messages ("(raylet) A worker died ...") to sys.stdout from a
    # thread of its own; stdout carries --json's document alone, so they go to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return embed_dataset(
                args.inputs, args.store, model=args.model, spec=spec, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                providers=providers, threads=args.threads, address=args.ray or None, actors=args.ray_actors,
                list_file=args.list_file, all_files=args.all_files, prune=args.prune, retry_errors=args.retry_errors,
                batch_size=args.batch_size, float16=args.float16, commit_rows=args.commit_rows,
                commit_seconds=args.commit_seconds, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def _finish(args: argparse.Namespace, summary: Any) -> int:
    data = summary.to_dict()
    if args.json:
        if data.get("random_weights"):
            data["note"] = RANDOM_WEIGHTS_NOTE
        print_json(data)
    else:  # --quiet keeps what made the exit status 1: a silent exit 1 leaves nothing to act on
        for line in summary_lines(data, failures_only=args.quiet):
            log(line)
    return int(summary.exit_code)


def summary_lines(data: dict[str, Any], failures_only: bool = False) -> list[str]:
    """The summary in words: counts, then each failure of this run, then what still fails."""
    lines = [f"{data['store']}: {note}" for note in data.get("notes") or []]  # what recovery of a killed run did
    still = int(data.get("still_failing") or 0)
    lines += [f"{data['seen']} files: {data['embedded']} embedded, {data['unchanged']} unchanged, "
              f"{data['failed']} failed{f', {still} still failing' if still else ''}, {data['pruned']} pruned "
              f"in {data['seconds']} s"]
    if failures_only:
        lines = []
    for failure in data.get("failures") or []:
        lines.append(f"  failed: {display_path(short_name(failure['path']))}: {display_path(failure['reason'])}")
    if still:
        lines.append(f"{still} unchanged file(s) still fail from earlier runs (not retried: the cause is in the "
                     "file); fix them or pass --retry-errors; exit 1")
    if data.get("random_weights") and not failures_only:
        lines.append(f"warning: {RANDOM_WEIGHTS_NOTE}")
    return lines
