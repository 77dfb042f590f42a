"""int8 accuracy on onnxruntime's AVX2 (non-VNNI) kernels, run under an emulated CPU without AVX-512.

    python benchmarks/int8_avx2_emulated.py [--model DIR] [--cpu Haswell] [--photos 11] [--rr-photos 2] [--only NAME,...]

onnxruntime's MLAS picks its int8 kernels from cpuid, so on an AVX-512 VNNI machine the AVX2 path
(VPMADDUBSW: u8 x s8 pairs summed into int16, which saturates; reduce_range exists for it) never
runs. qemu-user (``qemu-x86_64-static -cpu Haswell``: AVX2 + FMA, no AVX-512) reports the emulated
CPU's cpuid to the process, so this machine's own Python and onnxruntime pick the AVX2 kernels.
The emulator's speed says nothing about a real AVX2 CPU (int8 runs ~250x slower, about 25 s a
photo here; fp32's FMA is slower still), so only
ACCURACY is measured: each candidate is quantized natively (quantization does not depend on the
CPU), run natively (VNNI) and emulated (AVX2) on the same held-out photos, and both are compared
with fp32 run natively. Writes JSON under benchmarks/results/ and prints a table; skips (exit 0,
nothing written) when qemu-x86_64-static is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QEMU = "qemu-x86_64-static"
# The settings that differ on AVX2: U8S8 (what VNNI runs; its product saturates on AVX2), with and
# without reduce_range, S8S8 (onnxruntime's default), per-tensor U8S8 (smaller weights per column).
AVX2_CANDIDATES = ("static-QDQ-S8S8-pc-rr", "static-QDQ-U8S8-pc", "static-QDQ-U8S8-pc-rr", "static-QDQ-S8S8-pc",
                   "static-QDQ-U8S8")
# Instruction sets whose presence in the emulated process would make the run meaningless.
FORBIDDEN = ("AVX512F", "AVX512BW", "AVX512VL", "AVX512VNNI", "AVX512_VNNI")
# One instruction of each kind, then vzeroupper and ret: VPMADDUBSW ymm0, ymm1, ymm2 (AVX2's u8s8
# product) and VPDPBUSD zmm0, zmm1, zmm2 (AVX-512 VNNI's). The emulated process must run the first
# and die of SIGILL on the second: then MLAS cannot have run a VNNI kernel there.
INSTRUCTIONS = {"avx2_vpmaddubsw": "c4e27504c2c5f877c3", "avx512_vnni_vpdpbusd": "62f2754850c2c5f877c3"}


def cpu_features() -> dict[str, bool]:
    """numpy's own runtime cpuid probe: what the process (native or emulated) is told it runs on."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # numpy >= 2
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[no-redef]
    return {k: bool(v) for k, v in __cpu_features__.items()}


def execute(instruction: str) -> int:
    """Run one instruction of INSTRUCTIONS (an illegal one kills the process with SIGILL)."""
    import ctypes
    import mmap

    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex(INSTRUCTIONS[instruction]))
    ctypes.CFUNCTYPE(None)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
    return 0


def probe_instructions(qemu: str, cpu: str) -> dict[str, str]:
    """Which of INSTRUCTIONS the emulated CPU executes: "executed" or the signal that killed it."""
    result = {}
    for instruction in INSTRUCTIONS:
        done = subprocess.run([qemu, "-cpu", cpu, sys.executable, str(Path(__file__).resolve()), "--execute",
                               instruction], capture_output=True, text=True, timeout=300)
        code = done.returncode
        result[instruction] = "executed" if code == 0 else (
            signal.Signals(-code).name if code < 0 else f"SIGILL (exit {code})" if code == 128 + signal.SIGILL
            else f"exit {code}: {done.stderr.strip().splitlines()[-1:]}")
    return result


def worker(folder: Path) -> int:
    """Run inside the emulator: only numpy and onnxruntime (no vggsim), one output file per model
    and photo, so that a run stopped by the time limit keeps what it finished."""
    import onnxruntime

    features = cpu_features()
    (folder / "emulated-cpu.json").write_text(json.dumps(features))
    bad = [k for k in FORBIDDEN if features.get(k)]
    if bad or not features.get("AVX2"):
        print(f"emulated CPU reports {bad or 'no AVX2'}: not an AVX2-only CPU; choose another --cpu", file=sys.stderr)
        return 3
    plan = json.loads((folder / "plan.json").read_text())
    inputs = np.load(folder / "inputs.npy")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    for job in plan["jobs"]:
        session = onnxruntime.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
        for i in range(job["photos"]):
            started = time.perf_counter()
            out = session.run(None, {plan["input_name"]: inputs[i:i + 1]})[0]
            np.save(folder / f"out-{job['name']}-{i}.npy", out)
            print(f"  emulated {job['name']} photo {i + 1}/{job['photos']}: {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    return 0


def emulate(folder: Path, cpu: str, timeout_s: float) -> dict[str, Any]:
    """Run this file's worker under qemu-user with ``cpu``, niced, killed at ``timeout_s``."""
    command = ["nice", "-n", "10", QEMU, "-cpu", cpu, sys.executable, str(Path(__file__).resolve()),
               "--worker", str(folder)]
    started = time.perf_counter()
    log = folder / "emulated.log"
    lines: list[str] = []

    def relay() -> None:  # the worker's progress lines, without qemu's notes on cpuid bits it lacks
        text = log.read_text(errors="replace").splitlines()
        for line in text[len(lines):]:
            if "TCG doesn't support requested feature" not in line:
                print(line, file=sys.stderr, flush=True)
        lines[:] = text

    timed_out = False
    with log.open("w") as sink, subprocess.Popen(command, stderr=sink, start_new_session=True) as proc:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            relay()
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGTERM)
                timed_out = True
                proc.wait()
                break
            time.sleep(2)
    relay()
    return {"command": " ".join(command[:6]) + " python ...", "returncode": proc.returncode, "timed_out": timed_out,
            "seconds": round(time.perf_counter() - started), "stderr_tail": [x for x in lines if "TCG doesn't" not in x][-3:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL"), help="fp32 model folder")
    parser.add_argument("--cpu", default="Haswell", help="qemu CPU model without AVX-512 (Haswell, Broadwell, "
                        "Skylake-Client)")
    parser.add_argument("--photos", type=int, default=11, help="held-out photos run emulated (of 11; each takes "
                        "minutes per candidate)")
    parser.add_argument("--rr-photos", type=int, default=2, help="photos for the reduce_range candidates: 7-bit "
                        "weights cannot saturate VPMADDUBSW (2 x 255 x 64 < 32767), so their AVX2 output should match "
                        "VNNI's exactly; a few photos check that")
    parser.add_argument("--fp32-photos", type=int, default=0, help="photos run in fp32 emulated as well, a sanity "
                        "check of the emulator (about 35 minutes a photo here: emulated FMA is far slower than integer SIMD)")
    parser.add_argument("--only", default="", help=f"comma-separated candidates (default: {','.join(AVX2_CANDIDATES)})")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for the whole emulated run; what "
                        "finished before is reported")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default "
                        "benchmarks/results/int8-avx2-emulated.json)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--execute", choices=tuple(INSTRUCTIONS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute is not None:
        return execute(args.execute)
    if args.worker is not None:
        return worker(args.worker)
    qemu = shutil.which(QEMU)
    if qemu is None:
        print(f"skipped: {QEMU} is not installed (Debian/Ubuntu: apt-get install qemu-user-static); "
              "nothing measured, nothing written", file=sys.stderr)
        return 0
    if not args.model:
        print("--model DIR (or VGGSIM_TEST_MODEL) names no fp32 model folder", file=sys.stderr)
        return 2

    from int8_settings import ROOT, cosines, held_out_inputs, load, machine
    from onnxruntime.quantization import quant_pre_process

    from vggsim.export.int8_settings import CANDIDATES, SETTINGS_BY_ISA
    from vggsim.export.variants import quantize_int8
    from vggsim.model.manifest import read_manifest
    from vggsim.model.session import create_session

    names = args.only.split(",") if args.only else list(AVX2_CANDIDATES)
    by_name = {c.name: c for c in CANDIDATES}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"--only names unknown candidates {unknown}; choose from {', '.join(by_name)}", file=sys.stderr)
        return 2
    base = read_manifest(args.model)
    found = held_out_inputs(base.preprocess)
    if found is None:
        return 2
    calibration, photos, inputs = found
    n = max(1, min(args.photos, len(photos)))
    fp32, _ = create_session(base.model_path, "cpu", threads=1)

    def embed(session: Any) -> np.ndarray:  # one photo at a time, as the emulated worker runs them
        return np.concatenate([session.run(None, {base.input_name: inputs[i:i + 1]})[0] for i in range(len(photos))])

    reference = embed(fp32)
    report: dict[str, Any] = {
        "command": "python benchmarks/int8_avx2_emulated.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(1), "emulator": {"binary": qemu, "version": subprocess.run(
            [qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0], "cpu": args.cpu},
        "native_cpu_features": {k: v for k, v in cpu_features().items() if k.startswith(("AVX", "FMA"))},
        "emulated_instructions": probe_instructions(qemu, args.cpu), "load_average_start": load(),
        "model": str(base.model_path), "random_weights": base.weights.random,
        "calibration_photos": [p.name for p in calibration], "accuracy_photos": [p.name for p in photos],
        "emulated_photos": n, "table_avx2": SETTINGS_BY_ISA["avx2"].settings.name, "candidates": []}
    with tempfile.TemporaryDirectory(prefix="avx2emu-") as tmp:
        folder = Path(tmp)
        np.save(folder / "inputs.npy", inputs[:n])
        prepared = folder / "prepared.onnx"
        quant_pre_process(str(base.model_path), str(prepared))
        jobs = []
        for name in names:
            target = folder / f"{name}.onnx"
            quantize_int8(prepared, target, calibration, base.preprocess, base.input_name, by_name[name],
                          pre_process=False)
            session, _ = create_session(target, "cpu", threads=1)
            native = embed(session)
            cos = cosines(reference, native)
            report["candidates"].append({"name": name, "settings": by_name[name].to_dict(),
                                         "native_min_cosine_all": float(cos.min()),
                                         "native_mean_cosine_all": float(cos.mean()), "native": native})
            jobs.append({"name": name, "model": str(target),
                         "photos": min(n, args.rr_photos) if by_name[name].reduce_range else n})
            print(f"{name}: native min cosine {cos.min():.5f} on {len(photos)} photos", file=sys.stderr)
        if args.fp32_photos > 0:
            jobs.append({"name": "fp32", "model": str(base.model_path), "photos": min(args.fp32_photos, n)})
        (folder / "plan.json").write_text(json.dumps({"input_name": base.input_name, "jobs": jobs}))
        report["emulated_run"] = emulate(folder, args.cpu, args.timeout)
        features_file = folder / "emulated-cpu.json"
        features = json.loads(features_file.read_text()) if features_file.exists() else {}
        report["emulated_cpu_features"] = {k: v for k, v in features.items() if k.startswith(("AVX", "FMA"))}

        def outputs(name: str, count: int) -> list[np.ndarray]:
            return [np.load(f) for i in range(count) if (f := folder / f"out-{name}-{i}.npy").exists()]

        for row in report["candidates"]:
            native = row.pop("native")
            got = outputs(row["name"], n)  # the first photos, in order; fewer if stopped by --timeout
            row["emulated_photos"] = len(got)
            if not got:
                continue
            k = len(got)
            emulated = np.concatenate(got)
            emu_cos, nat_cos = cosines(reference[:k], emulated), cosines(reference[:k], native[:k])
            row.update({"emulated_min_cosine": float(emu_cos.min()), "emulated_mean_cosine": float(emu_cos.mean()),
                        "native_min_cosine": float(nat_cos.min()), "native_mean_cosine": float(nat_cos.mean()),
                        "emulated_vs_native_max_rel_error": float(np.abs(emulated - native[:k]).max()
                                                                  / np.abs(native[:k]).max())})
        fp32_emulated = outputs("fp32", args.fp32_photos)
        if fp32_emulated:
            k = len(fp32_emulated)
            report["fp32_emulated_vs_native"] = {"photos": k, "max_rel_error": float(
                np.abs(np.concatenate(fp32_emulated) - reference[:k]).max() / np.abs(reference[:k]).max())}
    report["load_average_end"] = load()
    out = args.out or ROOT / "benchmarks" / "results" / "int8-avx2-emulated.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    print(f"\nwritten {out}")
    return 0 if report["emulated_run"]["returncode"] == 0 or report["emulated_run"]["timed_out"] else 1


def table(report: dict[str, Any]) -> str:
    m, e = report["machine"], report["emulator"]
    emu, ran = report["emulated_cpu_features"], report["emulated_instructions"]
    lines = [f"{m['cpu']} ({m['isa']}; {m['cpus']} CPUs), onnxruntime {m['onnxruntime']}, 1 thread; emulated: "
             f"{e['version']} -cpu {e['cpu']} (AVX2 {emu.get('AVX2')}, FMA3 {emu.get('FMA3')}, AVX512F "
             f"{emu.get('AVX512F')}, AVX512VNNI {emu.get('AVX512VNNI')}; "
             f"VPMADDUBSW ymm: {ran['avx2_vpmaddubsw']}, VPDPBUSD zmm: {ran['avx512_vnni_vpdpbusd']}); "
             f"load average {report['load_average_start']}"
             f" -> {report['load_average_end']}", "",
             "| settings | photos | min cosine AVX2 (emulated) | mean cosine AVX2 (emulated) | min cosine VNNI (native) "
             "| mean cosine VNNI (native) | AVX2 vs VNNI max rel. diff | VNNI min cosine, all photos |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["candidates"]:
        mark = " (`avx2` row)" if r["name"] == report["table_avx2"] else ""
        if not r["emulated_photos"]:
            lines.append(f"| {r['name']}{mark} | 0 | not run (time limit) | | | | | {r['native_min_cosine_all']:.5f} |")
            continue
        lines.append(f"| {r['name']}{mark} | {r['emulated_photos']} | {r['emulated_min_cosine']:.5f} | "
                     f"{r['emulated_mean_cosine']:.5f} | {r['native_min_cosine']:.5f} | {r['native_mean_cosine']:.5f}"
                     f" | {r['emulated_vs_native_max_rel_error']:.2e} | {r['native_min_cosine_all']:.5f} |")
    if "fp32_emulated_vs_native" in report:
        f = report["fp32_emulated_vs_native"]
        lines.append(f"\nfp32 emulated vs native: max relative error {f['max_rel_error']:.2e} on {f['photos']} photo(s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
