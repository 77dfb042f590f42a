"""Site-packages megabytes per distribution of a `pip install --target` folder, as JSON and a table.

Files are attributed through each *.dist-info/RECORD (what pip installed for that distribution), so
bundled libraries (numpy.libs, pillow.libs) count for their owner. Files no RECORD names count as
"(unrecorded)". Usage: size.py SITE_DIR --label aarch64 [--json OUT] [--meta KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

MB = 1_000_000


def sizes_by_distribution(site: Path) -> dict[str, int]:
    """Bytes on disk per distribution name (lower-case), from the RECORD files under ``site``."""
    owned: dict[Path, str] = {}
    for record in sorted(site.glob("*.dist-info/RECORD")):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        with record.open(newline="") as handle:
            for row in csv.reader(handle):
                if row:
                    owned[(site / row[0]).resolve()] = name
    totals: dict[str, int] = {}
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            name = owned.get(path.resolve(), "(unrecorded)")
            totals[name] = totals.get(name, 0) + path.stat().st_size
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("site", type=Path)
    parser.add_argument("--label", default="aarch64")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if not any(args.site.glob("*.dist-info")):
        print(f"size.py: {args.site} holds no *.dist-info: pass a folder made by pip install --target",
              file=sys.stderr)
        return 2
    totals = sizes_by_distribution(args.site)
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])
    total = sum(totals.values())
    print(f"site-packages of {args.label}: {args.site}")
    for name, size in ordered:
        print(f"  {name:<24} {size / MB:8.1f} MB")
    print(f"  {'total':<24} {total / MB:8.1f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "platform": args.label, "unit": "MB (10^6 bytes, files on disk, no __pycache__)",
            "packages": {name: round(size / MB, 2) for name, size in ordered},
            "total_mb": round(total / MB, 2), **dict(m.split("=", 1) for m in args.meta)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
