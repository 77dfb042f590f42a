"""Compare the emulated arm64 vectors with the x86-64 ones of the same model, print a table, write JSON.

The tolerance logic is pure NumPy (tested in tests/test_aarch64_check.py); main() is what
scripts/aarch64/check.sh calls. Exit status 1 when any row fails, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FP32_MAX_RELATIVE = 1e-5
INT8_MIN_COSINE = 0.999


class ParityInputError(ValueError):
    """Vectors that cannot be compared (shape, dtype or non-finite values)."""


@dataclass(frozen=True)
class ParityRow:
    model: str
    metric: str
    value: float
    bound: float
    ok: bool


def _checked(arm: np.ndarray, x86: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    if arm.shape != x86.shape or arm.ndim != 2 or arm.shape[0] == 0:
        raise ParityInputError(f"{model}: arm64 vectors {arm.shape} and x86-64 vectors {x86.shape} differ "
                               "or are empty: rerun the check, both sides must embed the same photos")
    a, b = arm.astype(np.float64), x86.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ParityInputError(f"{model}: non-finite values in the vectors: the model or its runtime is broken")
    return a, b


def max_relative_error(arm: np.ndarray, x86: np.ndarray, model: str = "fp32") -> float:
    """Largest |arm - x86| of a row over that row's largest |x86| (0 for identical rows)."""
    a, b = _checked(arm, x86, model)
    scale = np.abs(b).max(axis=1)
    diff = np.abs(a - b).max(axis=1)
    # A zero reference row is only matched by a zero row; anything else is an infinite error.
    rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), np.where(diff > 0, np.inf, 0.0))
    return float(rel.max())


def min_cosine(arm: np.ndarray, x86: np.ndarray, model: str = "int8") -> float:
    """Smallest row-wise cosine similarity; a zero row counts as cosine 0."""
    a, b = _checked(arm, x86, model)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return float(cos.min())


def fp32_row(arm: np.ndarray, x86: np.ndarray, bound: float = FP32_MAX_RELATIVE) -> ParityRow:
    value = max_relative_error(arm, x86, "fp32")
    return ParityRow("fp32", "max relative error", value, bound, value <= bound)


def int8_row(arm: np.ndarray, x86: np.ndarray, bound: float = INT8_MIN_COSINE) -> ParityRow:
    value = min_cosine(arm, x86, "int8")
    return ParityRow("int8", "min cosine", value, bound, value >= bound)


def table(rows: list[ParityRow], timings: dict[str, dict[str, object]]) -> str:
    lines = [f"{'model':<6} {'metric':<20} {'value':>12} {'bound':>10}  result  arm64 embed s  x86-64 embed s"]
    for row in rows:
        op = "<=" if row.metric.startswith("max") else ">="
        arm_t = timings.get(f"{row.model}_arm64", {}).get("embed_s", "?")
        x86_t = timings.get(f"{row.model}_x86_64", {}).get("embed_s", "?")
        lines.append(f"{row.model:<6} {row.metric:<20} {row.value:>12.3g} {op}{row.bound:>8.3g}  "
                     f"{'PASS' if row.ok else 'FAIL':<6}  {arm_t!s:>13}  {x86_t!s:>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True,
                        help="folder holding {fp32,int8}_{arm64,x86_64}.npy and .json from embed.py")
    parser.add_argument("--json", type=Path, help="write the rows, timings and --meta here")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="extra facts for the JSON (load average, versions, wall times)")
    args = parser.parse_args(argv)
    try:
        vectors = {name: np.load(args.work / f"{name}.npy")
                   for name in ("fp32_arm64", "fp32_x86_64", "int8_arm64", "int8_x86_64")}
        rows = [fp32_row(vectors["fp32_arm64"], vectors["fp32_x86_64"]),
                int8_row(vectors["int8_arm64"], vectors["int8_x86_64"])]
    except (OSError, ParityInputError) as exc:
        print(f"aarch64 check: {exc}", file=sys.stderr)
        return 2
    timings: dict[str, dict[str, object]] = {}
    for name in vectors:
        path = args.work / f"{name}.json"
        if path.is_file():
            timings[name] = json.loads(path.read_text().strip().splitlines()[-1])
    print(table(rows, timings))
    if args.json:
        meta = dict(item.split("=", 1) for item in args.meta)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        photos = {"fp32": len(vectors["fp32_x86_64"]), "int8": len(vectors["int8_x86_64"])}
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "photos": photos,
                                         "timings": timings, **meta}, indent=2) + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
