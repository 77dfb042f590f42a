"""What ``pip install vggsim`` brings, and how fast a fresh install starts.

    python benchmarks/install_size.py [--model DIR] [--image PATH] [--runs N] [--out JSON]

Builds the wheel from this checkout, installs it (base install, no extras) into a fresh
venv under /tmp, and reports site-packages MB per installed distribution (from each one's
RECORD), checks that nothing beyond onnxruntime, NumPy, Pillow and what they themselves
require is installed, and times ``import vggsim`` and the first embedding in new
processes (median of --runs), default and edge profile. A second venv installs the same
four packages with ``--no-deps`` (onnxruntime's own requirements left out) and checks the
embedding is bit-identical there: what a device that needs the smallest install can drop.
Writes JSON (default benchmarks/results/install-size.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASE = {"vggsim", "onnxruntime", "numpy", "pillow"}
VENV_TOOLS = {"pip", "setuptools", "wheel"}  # the venv's own, not brought by vggsim

# Run inside the venv: every distribution, its size on disk from RECORD, what it requires.
INVENTORY = r"""
import json, os, re
from importlib import metadata
out = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    size = 0
    for f in dist.files or []:
        path = f.locate()
        if os.path.isfile(path):
            size += os.path.getsize(path)
    requires = [r for r in (dist.requires or []) if "extra ==" not in r]
    out[name] = {"version": dist.version, "bytes": size, "requires": requires}
print(json.dumps(out))
"""

# Run inside the venv: seconds to import vggsim, then to the first embedding.
FIRST = r"""
import sys, time, warnings
t0 = time.perf_counter()
import vggsim
t1 = time.perf_counter()
warnings.simplefilter("ignore")
v = vggsim.Embedder(sys.argv[1], providers="cpu", profile=sys.argv[2]).embed([sys.argv[3]])
t2 = time.perf_counter()
import numpy as np
np.save(sys.argv[4], v)
print(t1 - t0, t2 - t0)
"""


def sh(*cmd: str, timeout: int = 900, **kw: Any) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return str(result.stdout)


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout (setuptools already installed here: no download to build)."""
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO))
    return next(out.glob("vggsim-*.whl"))


def make_venv(path: Path, wheel: Path, no_deps: bool) -> tuple[Path, float]:
    sh(sys.executable, "-m", "venv", str(path))
    python = path / "bin" / "python"
    start = time.perf_counter()
    extra = ["--no-deps", "onnxruntime", "numpy", "pillow"] if no_deps else []
    sh(str(python), "-m", "pip", "install", "-q", str(wheel), *extra)
    return python, time.perf_counter() - start


def site_packages(python: Path) -> Path:
    return Path(sh(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())


def tree_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def requirement_closure(inventory: dict[str, Any], roots: set[str]) -> set[str]:
    """``roots`` and everything they require, as installed (markers that do not apply are not installed)."""
    seen: set[str] = set()
    todo = [r for r in roots if r in inventory]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in inventory[name]["requires"]:
            dep = re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]).lower()
            if dep in inventory and dep not in seen:
                todo.append(dep)
    return seen


def timings(python: Path, model: str, image: str, runs: int, work: Path) -> dict[str, Any]:
    """import vggsim and first embedding, new process each; the edge profile's saved graph made first."""
    folder = work / "model"
    if not folder.exists():
        folder.mkdir()
        os.symlink((Path(model) / "model.onnx").resolve(), folder / "model.onnx")
        shutil.copy(Path(model) / "manifest.json", folder / "manifest.json")
    out: dict[str, Any] = {}
    for profile in ("default", "edge"):
        if profile == "edge":  # the first start saves the optimised graph; time it apart
            first = sh(str(python), "-c", FIRST, str(folder), profile, image, str(work / "v.npy")).split()
            out["edge_first_start_s"] = round(float(first[1]), 3)
        pairs = [sh(str(python), "-c", FIRST, str(folder), profile, image, str(work / f"{profile}.npy")).split()
                 for _ in range(runs)]
        out[profile] = {"import_vggsim_s": round(statistics.median(float(p[0]) for p in pairs), 3),
                        "first_embedding_s": round(statistics.median(float(p[1]) for p in pairs), 3)}
    return out


def import_breakdown(python: Path, runs: int) -> dict[str, float]:
    """Seconds of ``import vggsim`` by top-level package (python -X importtime, each module's
    own time, median of runs): what vggsim's own modules cost beside NumPy, onnxruntime and Pillow."""
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        stderr = subprocess.run([str(python), "-X", "importtime", "-c", "import vggsim"], capture_output=True,
                                text=True, timeout=120).stderr
        groups: dict[str, float] = {}
        for line in stderr.splitlines():
            parts = line.split("|")
            self_us = parts[0].removeprefix("import time:").strip()
            if len(parts) != 3 or not self_us.isdigit():  # not a module line, or the header
                continue
            name = parts[2].strip().split(".")[0]  # each module's own time, by its top-level package
            group = name if name in ("numpy", "onnxruntime", "PIL", "vggsim") else "other (stdlib, deps)"
            groups[group] = groups.get(group, 0.0) + int(self_us) / 1e6
        per_run.append(groups)
    names = sorted({k for run in per_run for k in run})
    return {k: round(statistics.median(run.get(k, 0.0) for run in per_run), 3) for k in names}


def inventory_of(python: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sh(str(python), "-c", INVENTORY))
    return data


def report_install(python: Path, label: str, seconds: float, no_deps: bool) -> dict[str, Any]:
    inventory = inventory_of(python)
    brought = {n: d for n, d in inventory.items() if n not in VENV_TOOLS}
    allowed = requirement_closure(inventory, BASE)
    extra = sorted(set(brought) - allowed)
    deps_of_ort = sorted(requirement_closure(inventory, {"onnxruntime"}) - {"onnxruntime", "numpy"})
    return {"install": label, "pip_install_s": round(seconds, 1), "no_deps": no_deps,
            "site_packages_mb": round(tree_mb(site_packages(python)), 1),
            "brought_mb": round(sum(d["bytes"] for d in brought.values()) / 1e6, 1),
            "packages": {n: {"version": d["version"], "mb": round(d["bytes"] / 1e6, 1)}
                         for n, d in sorted(brought.items(), key=lambda kv: -kv[1]["bytes"])},
            "onnxruntime_requires": deps_of_ort, "beyond_base": extra}


def default_image(work: Path) -> str:
    try:
        from vggsim.images.samples import sample_photos

        photos = sample_photos()
    except ImportError:
        photos = []
    if photos:
        return str(photos[0])
    import numpy as np
    from PIL import Image

    path = work / "noise.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


def table(report: dict[str, Any]) -> list[str]:
    lines = []
    for inst in report["installs"]:
        lines.append(f"{inst['install']}: {inst['brought_mb']:.1f} MB brought ({inst['site_packages_mb']:.1f} MB "
                     f"site-packages with the venv's pip), beyond the base set: {inst['beyond_base'] or 'nothing'}")
        for name, pkg in inst["packages"].items():
            lines.append(f"    {name:22} {pkg['version']:12} {pkg['mb']:7.1f} MB")
        t = inst.get("timings")
        if t:
            lines.append(f"    import vggsim {t['default']['import_vggsim_s']:.2f} s; first embedding (new process, "
                         f"import included) default {t['default']['first_embedding_s']:.2f} s, "
                         f"edge {t['edge']['first_embedding_s']:.2f} s (its first start {t['edge_first_start_s']:.2f} s)")
        if inst.get("import_breakdown_s"):
            lines.append("    import vggsim by package (-X importtime, s): " + ", ".join(
                f"{k} {v:.2f}" for k, v in inst["import_breakdown_s"].items()))
        if "vector_equal_to_full_install" in inst:
            lines.append(f"    embedding bit-identical to the full install: {inst['vector_equal_to_full_install']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL")
                        or "models/vgg16", help="fp32 model folder for the timings")
    parser.add_argument("--image", help="the image to embed (default: the first sample photo)")
    parser.add_argument("--runs", type=int, default=3, help="new processes per timing (median)")
    parser.add_argument("--out", default=str(RESULTS / "install-size.json"), help="JSON report")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vggsim-install-size-"))
    try:
        import numpy as np

        image = args.image or default_image(work)
        load_before = os.getloadavg()
        wheel = build_wheel(work / "dist")
        installs = []
        vectors = {}
        for label, no_deps in (("pip install vggsim", False), ("lean: --no-deps vggsim onnxruntime numpy pillow", True)):
            venv = work / ("lean" if no_deps else "full")
            python, seconds = make_venv(venv, wheel, no_deps)
            entry = report_install(python, label, seconds, no_deps)
            entry["timings"] = timings(python, args.model, image, args.runs, venv)
            entry["import_breakdown_s"] = import_breakdown(python, args.runs)
            vectors[label] = np.load(venv / "default.npy")
            if no_deps:
                full = vectors["pip install vggsim"]
                entry["vector_equal_to_full_install"] = bool(np.array_equal(vectors[label], full))
                entry["edge_equal_to_default"] = bool(np.array_equal(np.load(venv / "edge.npy"), vectors[label]))
            else:
                entry["edge_equal_to_default"] = bool(np.array_equal(np.load(venv / "edge.npy"), vectors[label]))
            installs.append(entry)
        from vggsim.tools.bench import hardware

        report = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "hardware": hardware(),
                  "python": sys.version.split()[0], "wheel": wheel.name, "image": image, "model": args.model,
                  "runs": args.runs, "load_average_before": load_before, "load_average_after": os.getloadavg(),
                  "installs": installs}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hw = report["hardware"]
    print(f"{hw['cpu']} [{' '.join(hw['simd'])}] {hw['machine']}, Python {report['python']}, "
          f"load average {load_before[0]:.1f} -> {report['load_average_after'][0]:.1f}")
    print("\n".join(table(report)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
