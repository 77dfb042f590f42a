"""int8 quantization settings chosen per CPU instruction set.

onnxruntime's int8 kernels (MLAS) are picked at run time by cpuid: an AVX-512 VNNI CPU runs
u8s8 products in one instruction (VPDPBUSD), an AVX2 CPU without VNNI goes through 16-bit
intermediate sums (VPMADDUBSW) that can saturate, an arm64 CPU with the dot-product extension
uses UDOT/SDOT. So the settings that pay differ by instruction set; the table below records,
for each, the settings and whether they were measured here (benchmarks/int8_settings.py) or
are onnxruntime's documented recommendation, taken as is because no such machine was at hand.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ISAS = ("avx512_vnni", "avx2", "arm64_dotprod", "arm64_neon", "generic")
ORT_QUANTIZATION_DOCS = "https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html"


@dataclass(frozen=True)
class Int8Settings:
    """One way of quantizing: static (calibrated activations) or dynamic (activations
    quantized at run time), graph format, integer types, per-channel weights, 7-bit weights."""

    method: str = "static"  # "static" (quantize_static) or "dynamic" (quantize_dynamic)
    quant_format: str = "QDQ"  # "QDQ" or "QOperator" (dynamic is always QOperator)
    activations: str = "uint8"  # "uint8" or "int8"
    weights: str = "int8"  # "int8" or "uint8"
    per_channel: bool = True
    reduce_range: bool = False

    def __post_init__(self) -> None:
        checks = {"method": ("static", "dynamic"), "quant_format": ("QDQ", "QOperator"),
                  "activations": ("uint8", "int8"), "weights": ("uint8", "int8")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Int8Settings.{name} must be one of {allowed}, not {getattr(self, name)!r}")

    @property
    def name(self) -> str:
        """Short label: ``static-QDQ-U8S8-pc-rr``, ``dynamic-WS8`` (weights only: activations at run time)."""
        short = {"uint8": "U8", "int8": "S8"}
        types = short[self.activations] + short[self.weights] if self.method == "static" else "W" + short[self.weights]
        head = "dynamic" if self.method == "dynamic" else f"static-{self.quant_format}"
        return "-".join([head, types] + ["pc"] * self.per_channel + ["rr"] * self.reduce_range)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IsaChoice:
    """The settings for one instruction set, and where they come from."""

    settings: Int8Settings
    measured: bool
    source: str


# The candidates benchmarks/int8_settings.py measures (a dynamic one has no activation type:
# onnxruntime quantizes activations to uint8 at run time).
CANDIDATES: tuple[Int8Settings, ...] = (
    Int8Settings("static", "QDQ", "uint8", "int8", True, False),
    Int8Settings("static", "QDQ", "uint8", "int8", False, False),
    Int8Settings("static", "QDQ", "uint8", "int8", True, True),
    Int8Settings("static", "QDQ", "int8", "int8", True, False),
    Int8Settings("static", "QDQ", "int8", "int8", False, False),
    Int8Settings("static", "QDQ", "int8", "int8", True, True),
    Int8Settings("static", "QDQ", "uint8", "uint8", True, False),
    Int8Settings("static", "QOperator", "uint8", "int8", True, False),
    Int8Settings("static", "QOperator", "uint8", "int8", True, True),
    Int8Settings("static", "QOperator", "int8", "int8", True, False),
    Int8Settings("dynamic", "QOperator", "uint8", "int8", False, False),
    Int8Settings("dynamic", "QOperator", "uint8", "int8", True, False),
)

# What the export uses on each instruction set. Only rows with measured=True were timed on
# such a CPU (benchmarks/int8_settings.py; on AVX-512 VNNI the static U8S8/S8S8 candidates in
# QDQ, and U8S8 in QOperator, all ran at 0.22-0.29x fp32, within the noise of one another,
# while U8U8 ran at 1.1-1.2x, QOperator S8S8 and dynamic quantization (ConvInteger) at 6-8x).
# The other rows follow onnxruntime's quantization guide (ORT_QUANTIZATION_DOCS, "data type
# selection" and "when to use reduce-range and per-channel"): S8S8 in QDQ is its default and
# first choice (on x86-64 onnxruntime runs it as U8S8); on AVX2 / AVX-512 without VNNI the
# U8S8 product can saturate and per-channel weights want reduce_range there; on low-end arm64
# U8S8 may be faster than the alternatives, with the same accuracy. Per-channel weights
# everywhere: they raised the min cosine here (0.99970 against 0.99954 on VNNI).
# The avx2 row's ACCURACY was checked on onnxruntime's AVX2 kernels under qemu-user -cpu Haswell
# (benchmarks/int8_avx2_emulated.py; its speed is not measured, hence measured=False): per-channel
# U8S8/S8S8 without reduce_range saturates there (min cosine 0.99666, 0.99970 on VNNI), with
# reduce_range (7-bit weights: 2 x 255 x 64 < 32767, VPMADDUBSW cannot saturate) the output equals
# VNNI's bit for bit (0.99929). Per-tensor U8S8 saturated less (0.99948), but kept: reduce_range is
# saturation-free whatever the weights, while per-tensor's margin is 0.0002 on a random-weight model.
SETTINGS_BY_ISA: dict[str, IsaChoice] = {
    "avx512_vnni": IsaChoice(
        Int8Settings("static", "QDQ", "uint8", "int8", True, False), measured=True,
        source="measured: benchmarks/int8_settings.py on an Intel Xeon with AVX-512 VNNI, 2 cores: "
               "of the candidates with "
               "min cosine >= 0.99 against fp32 on real photos and within 1.2x of the fastest, the "
               "most accurate (int8_settings.pick)"),
    "avx2": IsaChoice(
        Int8Settings("static", "QDQ", "int8", "int8", True, True), measured=False,
        source="not measured here for speed: onnxruntime quantization guide (S8S8 in QDQ; per-channel with "
               "reduce_range on AVX2 without VNNI, against VPMADDUBSW saturation); accuracy checked on the AVX2 "
               "kernels under qemu-user -cpu Haswell (benchmarks/int8_avx2_emulated.py): "
               "output equal to VNNI's, while "
               "per-channel without reduce_range saturated (min cosine 0.99666 against 0.99929)"),
    "arm64_dotprod": IsaChoice(
        Int8Settings("static", "QDQ", "int8", "int8", True, False), measured=False,
        source="not measured here: onnxruntime quantization guide default (S8S8 in QDQ)"),
    "arm64_neon": IsaChoice(
        Int8Settings("static", "QDQ", "uint8", "int8", True, False), measured=False,
        source="not measured here: onnxruntime quantization guide (U8S8 can be faster on low-end "
               "arm64, same accuracy)"),
    "generic": IsaChoice(
        Int8Settings("static", "QDQ", "int8", "int8", True, False), measured=False,
        source="not measured here: onnxruntime quantization guide default (S8S8 in QDQ)"),
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, arm64 ``Features``); empty where not readable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect_isa(flags: Iterable[str] | None = None, machine: str | None = None) -> str:
    """The row of SETTINGS_BY_ISA for a CPU with these flags (this CPU by default).

    Follows MLAS's own order: AVX-512 VNNI needs AVX-512 F/BW/DQ/VL too; an AVX-VNNI (256-bit)
    CPU counts as avx2 here, since its kernels still lack the 512-bit width."""
    found = set(cpu_flags() if flags is None else flags)
    arch = (machine if machine is not None else platform.machine()).lower()
    if arch in ("aarch64", "arm64"):
        return "arm64_dotprod" if "asimddp" in found else "arm64_neon"
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"} <= found:
        return "avx512_vnni"
    if {"avx2", "fma"} <= found:
        return "avx2"
    return "generic"


def choose(isa: str | None = None) -> tuple[str, IsaChoice]:
    """(isa, choice) for ``isa``, or for this CPU when None."""
    name = detect_isa() if isa is None else isa
    if name not in SETTINGS_BY_ISA:
        raise ValueError(f"unknown instruction set {name!r}: use one of {', '.join(ISAS)}")
    return name, SETTINGS_BY_ISA[name]


def tuning_record(isa: str, choice: IsaChoice, export_isa: str) -> dict[str, Any]:
    """The manifest's ``quantization.tuning`` block (read by vggsim.model.manifest.schema.Int8Tuning)."""
    return {"isa": isa, "measured": choice.measured, "source": choice.source,
            "measured_isas": sorted(k for k, v in SETTINGS_BY_ISA.items() if v.measured),
            "export_cpu_isa": export_isa, "settings": choice.settings.to_dict()}


# Timings on a shared machine move by 10-20% between runs; within this band of the fastest,
# candidates count as equally fast and accuracy decides.
SAME_SPEED_BAND = 1.2


def pick(rows: list[dict[str, Any]], min_cosine: float) -> str | None:
    """The name of the candidate to use, from benchmark rows (``name``, ``ratio_b1``, ``ratio_b8``,
    ``min_cosine``): those at least ``min_cosine`` accurate, within SAME_SPEED_BAND of the fastest
    (geometric mean of the batch-1 and batch-8 ratios), then the most accurate (to 4 decimals),
    then the first in the order of the rows (CANDIDATES lists the onnxruntime default early)."""
    accurate = [r for r in rows if "error" not in r and r["min_cosine"] >= min_cosine]
    if not accurate:
        return None
    speed = {r["name"]: (r["ratio_b1"] * r["ratio_b8"]) ** 0.5 for r in accurate}
    fast = [r for r in accurate if speed[r["name"]] <= min(speed.values()) * SAME_SPEED_BAND]
    return str(max(fast, key=lambda r: round(r["min_cosine"], 4))["name"])
