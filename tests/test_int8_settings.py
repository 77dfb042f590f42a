"""int8 settings per instruction set, and the manifest block that records them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vggsim.export import int8_settings
from vggsim.export.int8_settings import (CANDIDATES, ISAS, SETTINGS_BY_ISA, Int8Settings, choose, cpu_flags, detect_isa,
                                         pick, tuning_record)
from vggsim.model.manifest import VariantAccuracy, read_manifest
from vggsim.model.manifest.schema import FieldError, Int8Tuning

AVX512_CORE = {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize(("flags", "machine", "isa"), [
    (AVX512_CORE | {"avx512_vnni"}, "x86_64", "avx512_vnni"),
    (AVX512_CORE, "x86_64", "avx2"),  # AVX-512 without VNNI: the u8s8 path saturates like AVX2's
    ({"avx2", "fma", "avx_vnni"}, "x86_64", "avx2"),
    ({"avx2", "fma"}, "AMD64", "avx2"),
    ({"sse4_2", "avx"}, "x86_64", "generic"),
    ({"fp", "asimd", "asimddp"}, "aarch64", "arm64_dotprod"),
    ({"fp", "asimd"}, "aarch64", "arm64_neon"),
    ({"avx512_vnni"}, "x86_64", "generic"),  # VNNI alone is not enough without AVX2
])
def test_detect_isa(flags: set[str], machine: str, isa: str) -> None:
    assert detect_isa(flags, machine) == isa


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "fma", "avx512_vnni"}
    assert cpu_flags(arm) == {"fp", "asimd", "asimddp"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert detect_isa() in ISAS  # this machine, whatever it is


def test_every_isa_has_a_choice_and_says_where_it_comes_from() -> None:
    assert set(SETTINGS_BY_ISA) == set(ISAS)
    for isa, choice in SETTINGS_BY_ISA.items():
        assert choice.measured or choice.source.startswith("not measured here"), isa
        assert choice.settings.method == "static", isa  # dynamic Conv (ConvInteger) was many times slower
    measured = [isa for isa, choice in SETTINGS_BY_ISA.items() if choice.measured]
    assert measured and all(SETTINGS_BY_ISA[isa].settings in CANDIDATES for isa in measured)
    assert choose("avx2") == ("avx2", SETTINGS_BY_ISA["avx2"])
    assert choose()[0] == detect_isa()
    with pytest.raises(ValueError, match="unknown instruction set 'sse9'"):
        choose("sse9")


def test_candidates_are_distinct_and_checked() -> None:
    names = [c.name for c in CANDIDATES]
    assert len(set(names)) == len(names) and "static-QDQ-U8S8-pc" in names and "dynamic-WS8" in names
    assert {c.quant_format for c in CANDIDATES} == {"QDQ", "QOperator"}
    assert {c.activations for c in CANDIDATES if c.method == "static"} == {"uint8", "int8"}
    with pytest.raises(ValueError, match="quant_format must be one of"):
        Int8Settings(quant_format="QLinear")
    assert Int8Settings(**CANDIDATES[2].to_dict()) == CANDIDATES[2]


def test_pick_prefers_accuracy_among_the_equally_fast() -> None:
    row = lambda name, b1, b8, cos: {"name": name, "ratio_b1": b1, "ratio_b8": b8, "min_cosine": cos}
    rows = [row("a", 0.30, 0.30, 0.99970), row("b", 0.26, 0.26, 0.99929), row("c", 0.20, 0.20, 0.98),
            row("d", 6.0, 6.0, 0.99990), {"name": "e", "error": "RuntimeError: no kernel"}]
    assert pick(rows, 0.99) == "a"  # b is faster, but within the band; a is more accurate; c is not accurate enough
    assert pick([rows[0], row("f", 0.10, 0.10, 0.9993)], 0.99) == "f"  # far faster wins
    assert pick([rows[0], row("g", 0.29, 0.31, 0.99971)], 0.99) == "a"  # same to 4 decimals: the first listed
    assert pick(rows[2:], 0.99) == "d" and pick([rows[2], rows[4]], 0.99) is None


def _int8_manifest(model_dir: Path, folder: Path, quantization: dict[str, object]) -> Path:
    """A variant manifest over a stand-in model file (the schema is what is tested here)."""
    from vggsim.export.variants import variant_manifest

    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"stand-in")
    accuracy = VariantAccuracy(images=2, min_cosine=0.999, mean_cosine=0.9995, bound_min_cosine=0.99, top_k=1,
                               top_k_agreement=1.0)
    variant_manifest(read_manifest(model_dir), "int8", folder / "model.onnx", quantization, accuracy).write(
        folder / "manifest.json")
    return folder


def test_manifest_records_the_tuning_and_old_manifests_still_load(model_dir: Path, tmp_path: Path) -> None:
    old_block = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "per_channel": True,
                 "activations": "uint8", "weights": "int8"}
    old = read_manifest(_int8_manifest(model_dir, tmp_path / "old", old_block))
    assert old.precision == "int8" and Int8Tuning.from_quantization(old.quantization) is None
    assert Int8Tuning.from_quantization(read_manifest(model_dir).quantization) is None  # fp32: no block at all

    isa, choice = choose("avx2")
    new = read_manifest(_int8_manifest(model_dir, tmp_path / "new",
                                       {**old_block, "tuning": tuning_record(isa, choice, "avx512_vnni")}))
    tuning = Int8Tuning.from_quantization(new.quantization)
    assert tuning is not None and tuning.isa == "avx2" and tuning.measured is False
    assert tuning.export_cpu_isa == "avx512_vnni" and "avx512_vnni" in tuning.measured_isas
    assert tuning.settings["reduce_range"] is choice.settings.reduce_range
    assert tuning.to_dict() == json.loads((tmp_path / "new" / "manifest.json").read_text())["quantization"]["tuning"]
    assert Int8Tuning.from_dict(tuning.to_dict()) == tuning

    broken = {**old_block, "tuning": {**tuning.to_dict(), "measured": "yes"}}
    bad = read_manifest(_int8_manifest(model_dir, tmp_path / "bad", broken))
    with pytest.raises(FieldError, match=r"`quantization.tuning.measured` must be true or false"):
        Int8Tuning.from_quantization(bad.quantization)
    with pytest.raises(FieldError, match=r"`quantization.tuning` must be a JSON object"):
        Int8Tuning.from_quantization({"tuning": ["avx2"]})


def test_export_quantizes_with_the_chosen_row(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export_variant passes the ISA's settings to the quantizer and records them (quantizer stubbed:
    the real one takes a minute and is run by the slow test below)."""
    pytest.importorskip("sympy")
    from vggsim.export import variants

    seen: list[Int8Settings] = []

    def fake_quantize(fp32: Path, target: Path, calibration: object, spec: object, input_name: str,
                      settings: Int8Settings | None = None, pre_process: bool = True) -> dict[str, object]:
        assert settings is not None
        seen.append(settings)
        target.write_bytes(fp32.read_bytes())  # "int8" = fp32 here: the accuracy check passes
        return {"format": settings.quant_format, "per_channel": settings.per_channel}

    monkeypatch.setattr(variants, "quantize_int8", fake_quantize)
    monkeypatch.setattr(variants, "split_photos", lambda calibration: (
        variants.sample_photos()[:1], variants.sample_photos()[1:3]))
    if len(variants.sample_photos()) < 3:
        pytest.skip("needs scikit-learn or scikit-image for real sample photos")
    out = variants.export_variant(model_dir, tmp_path / "int8", "int8", isa="arm64_dotprod")
    assert seen == [SETTINGS_BY_ISA["arm64_dotprod"].settings]
    tuning = Int8Tuning.from_quantization(read_manifest(out).quantization)
    assert tuning is not None and tuning.isa == "arm64_dotprod" and not tuning.measured
    assert tuning.export_cpu_isa == detect_isa()
    with pytest.raises(variants.ExportError, match="unknown instruction set 'mips'"):
        variants.export_variant(model_dir, tmp_path / "mips", "int8", isa="mips")


@pytest.mark.slow  # a real int8 calibration: about a minute, over 1 GB resident
def test_int8_export_for_avx2_uses_reduce_range(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("sympy")
    from vggsim.export.variants import export_variant

    out = export_variant(model_dir, tmp_path / "int8-avx2", "int8", isa="avx2")
    manifest = read_manifest(out)
    assert manifest.quantization is not None and manifest.quantization["reduce_range"] is True
    assert manifest.accuracy_vs_fp32 is not None and manifest.accuracy_vs_fp32.min_cosine >= 0.99
    tuning = Int8Tuning.from_quantization(manifest.quantization)
    assert tuning is not None and dataclasses.asdict(SETTINGS_BY_ISA["avx2"].settings) == dict(tuning.settings)


def test_the_module_names_its_source() -> None:
    assert int8_settings.ORT_QUANTIZATION_DOCS.startswith("https://onnxruntime.ai/")
