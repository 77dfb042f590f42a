"""The runtime never loads TensorFlow, and the package is what pyproject says it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import vggsim

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.full_env  # TensorFlow, keras and onnx must be installed for this to mean anything
def test_import_does_not_load_tensorflow_or_keras() -> None:
    code = (
        "import json, sys, vggsim, vggsim.cli, vggsim.export; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'tf2onnx', 'tf_keras'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.full_env  # TensorFlow, keras and onnx must be installed for this to mean anything
def test_the_cli_does_not_import_the_exporter_at_start() -> None:
    """`vggsim --help`, `embed`, `serve`... need only `--isa`'s choices from vggsim.export, not the
    exporter, its converter and parity checker (~130 ms of start, onnx and more)."""
    code = ("import json, sys, vggsim.cli, vggsim.export; "
            "print(json.dumps(sorted(m for m in ('vggsim.export.exporter', 'vggsim.export.parity', 'onnx') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    from vggsim.export import ExportResult, ParityTolerance, export_model  # still there, on first use

    assert callable(export_model) and ExportResult.__name__ == "ExportResult" and ParityTolerance is not None


def test_the_check_would_see_tensorflow_if_it_were_imported() -> None:
    pytest.importorskip("tensorflow")
    code = "import sys, vggsim, tensorflow; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("True")


def test_public_api_and_typing_marker() -> None:
    assert issubclass(vggsim.ImageError, ValueError)
    assert Path(vggsim.__file__).with_name("py.typed").is_file()
    for name in vggsim.__all__:
        assert hasattr(vggsim, name), name


@pytest.mark.skipif(os.environ.get("VGGSIM_RUNTIME_ONLY") != "1", reason="runtime-only environment")
def test_runtime_only_environment_has_no_tensorflow() -> None:
    import importlib.util

    assert importlib.util.find_spec("tensorflow") is None
    assert importlib.util.find_spec("keras") is None


def _can_build_from_source() -> bool:
    """pip wheel --no-build-isolation needs pyproject's build backend (setuptools>=77) here; the
    release stage's fresh venv of the installed wheel has Python's bundled setuptools 65."""
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


needs_build_backend = pytest.mark.skipif(not _can_build_from_source(),
                                         reason="builds the source tree: needs setuptools>=77 (the dev install)")


@pytest.mark.slow
@needs_build_backend
def test_wheel_holds_vggsim_and_vggsim_export_only(tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "src"  # a clean copy: no stale build/ folder can leak into the wheel
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("runtime", "export", "tests", "models", "benchmarks"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.onnx")
                        if folder == "models" else shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("vggsim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.startswith("vggsim-")}
    assert packages == {"vggsim"}
    assert any(n.startswith("vggsim/export/") for n in names)
    assert "vggsim/py.typed" in names
    # every subpackage of runtime/ is in the wheel (pyproject lists them: a new one must be added there)
    wanted = {"vggsim/" + init.relative_to(ROOT / "runtime").as_posix() for init in (ROOT / "runtime").rglob("__init__.py")}
    assert wanted - set(names) == set()
    assert any(n.startswith("vggsim/serve/static/") for n in names)
    assert not any(part in n for n in names for part in ("tests/", "models/", "benchmarks/"))
    # the only ONNX file is the tiny matmul graph `vggsim bench` times; no exported model
    assert [n for n in names if n.endswith(".onnx")] == ["vggsim/tools/bench_matmul.onnx"]


@needs_build_backend
def test_wheel_build_prints_no_package_would_be_ignored_warning_and_ships_the_data_files(tmp_path: Path) -> None:
    """setuptools warned "Package would be ignored" for vggsim/serve/static on every install; the
    warning text only shows in pip's verbose output, so the build runs with -v."""
    import shutil

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("runtime", "export"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                          "-v", "-w", str(tmp_path / "dist")], check=True, capture_output=True, text=True)
    log = out.stdout + out.stderr
    assert "Successfully built vggsim" in log  # the verbose log is the build's, not an early exit
    assert "would be ignored" not in log.lower()
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("vggsim-*.whl"))).namelist()
    for page in ("index.html", "review.html", "common.js"):  # common.js: what the pages share (page.py inlines it)
        assert f"vggsim/serve/static/{page}" in names
    assert "vggsim/tools/bench_matmul.onnx" in names


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    # pyproject lists the packages by name: a new subpackage left out installs from a checkout
    # (editable) but is missing from the wheel, where only the release stage would notice
    import tomllib

    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("runs from a checkout")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"vggsim." + ".".join(p.parent.relative_to(ROOT / "runtime").parts) if p.parent != ROOT / "runtime"
             else "vggsim" for p in (ROOT / "runtime").rglob("__init__.py")}
    found |= {"vggsim.export" + "".join("." + part for part in p.parent.relative_to(ROOT / "export").parts)
              for p in (ROOT / "export").rglob("__init__.py")}
    found = {name for name in found if "__pycache__" not in name}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
