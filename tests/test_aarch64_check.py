"""The aarch64 check's comparison logic (scripts/aarch64/compare.py) and size attribution, not the emulation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "aarch64"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"aarch64_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compare = _load("compare")
size = _load("size")
cpuinfo = _load("cpuinfo")


def _vectors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((3, 512), dtype=np.float32)


def test_fp32_passes_within_tolerance_and_fails_beyond() -> None:
    ref = _vectors()
    near = ref * np.float32(1 + 2e-7)
    assert compare.fp32_row(near, ref).ok
    far = ref.copy()
    far[1, 7] += 1e-3 * np.abs(ref[1]).max()
    row = compare.fp32_row(far, ref)
    assert not row.ok and row.value == pytest.approx(1e-3, rel=1e-3)


def test_int8_cosine_bound() -> None:
    ref = _vectors()
    assert compare.int8_row(ref + 1e-4, ref).ok
    flipped = ref.copy()
    flipped[2] = _vectors(seed=1)[2]  # one unrelated row drags the minimum down
    row = compare.int8_row(flipped, ref)
    assert not row.ok and row.value < 0.999


def test_zero_rows_are_not_silently_equal() -> None:
    ref = _vectors()
    zero = ref.copy()
    zero[0] = 0
    assert compare.min_cosine(zero, ref) == 0.0
    assert compare.max_relative_error(ref, zero) == np.inf
    assert compare.max_relative_error(zero, zero) == 0.0


@pytest.mark.parametrize("bad", [np.zeros((2, 512)), np.full((3, 512), np.nan)])
def test_unusable_vectors_raise(bad: np.ndarray) -> None:
    with pytest.raises(compare.ParityInputError):
        compare.max_relative_error(bad, _vectors())


def test_main_exit_status_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = _vectors()
    for name, value in {"fp32_arm64": ref, "fp32_x86_64": ref, "int8_arm64": ref, "int8_x86_64": ref}.items():
        np.save(tmp_path / f"{name}.npy", value)
    out = tmp_path / "result.json"
    assert compare.main(["--work", str(tmp_path), "--json", str(out), "--meta", "load_average=1 2 3"]) == 0
    assert "PASS" in capsys.readouterr().out and '"load_average": "1 2 3"' in out.read_text()
    np.save(tmp_path / "int8_arm64.npy", -ref)
    assert compare.main(["--work", str(tmp_path)]) == 1
    np.save(tmp_path / "int8_arm64.npy", ref[:2])
    assert compare.main(["--work", str(tmp_path)]) == 2


def test_size_attributes_files_through_record(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.so").write_bytes(b"x" * 1000)
    (tmp_path / "pkg.libs").mkdir()
    (tmp_path / "pkg.libs" / "b.so").write_bytes(b"y" * 500)
    (tmp_path / "stray.txt").write_bytes(b"z" * 7)
    info = tmp_path / "Pkg_Name-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("pkg/a.so,sha256=,1000\npkg.libs/b.so,,\nPkg_Name-1.0.dist-info/RECORD,,\n")
    totals = size.sizes_by_distribution(tmp_path)
    assert totals["pkg-name"] == 1500 + (info / "RECORD").stat().st_size
    assert totals["(unrecorded)"] == 7


def test_cpuinfo_has_one_arm_entry_per_processor() -> None:
    text = cpuinfo.cpuinfo(3)
    assert text.count("CPU implementer\t: 0x41") == 3 and "processor\t: 2" in text
