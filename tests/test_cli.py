"""The command line, end to end in subprocesses: output, exit codes, no tracebacks.

Parse-time checks (validators, help texts) run in-process through ``vggsim.cli.main``:
they never load a model, and a subprocess per case would cost seconds each.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vggsim.cli import build_parser, main
from vggsim.cli.common import RANDOM_WEIGHTS_NOTE, HelpFormatter


def vggsim(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    options: dict[str, object] = {"capture_output": True, **kw}
    result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-m", "vggsim", *args], text=True, env={**os.environ, **(env or {})}, timeout=600, **options)
    return result


def no_traceback(result: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout


def parse_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run main() in-process; the exit code and stderr of a command refused at parse time."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0), capsys.readouterr().err


# -- compare, doctor, usage ----------------------------------------------------------------------

def test_compare_prints_the_score(model_dir: Path, photos: list[Path], embedder) -> None:  # type: ignore[no-untyped-def]
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(embedder.similarity(photos[0], photos[1]), abs=1e-6)
    assert "random weights" in result.stderr


def test_compare_json_and_plot_into_a_missing_folder(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    plot = tmp_path / "new" / "folder" / "pair.png"
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir),
                    "--json", "--plot", str(plot), "--providers", "cpu")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"score", "a", "b", "provider", "model_sha256", "random_weights", "note"}
    assert data["provider"] == "CPUExecutionProvider"
    assert data["random_weights"] is True and data["note"] == RANDOM_WEIGHTS_NOTE
    with Image.open(plot) as image:
        assert image.width > 2 * 256 and image.format == "PNG"


def test_output_into_a_path_under_a_file_is_refused_before_work(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir),
                    "--plot", str(blocker / "sub" / "pair.png"))
    assert result.returncode == 2 and no_traceback(result)
    assert "is a file" in result.stderr and "random weights" not in result.stderr  # before the model loaded


def test_full_disk_while_writing_output_is_one_line_exit_1(model_dir: Path, photos: list[Path]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full to simulate a full disk")
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir), "--plot", "/dev/full")
    assert result.returncode == 1 and no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if "warning" not in line]
    assert len(errors) == 1 and "/dev/full" in errors[0] and "could not write" in errors[0]


def test_stdout_on_a_full_disk_is_one_line_exit_1(model_dir: Path, photos: list[Path]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full to simulate a full disk")
    with open("/dev/full", "w") as full:
        result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir), "--json", stdout=full,
                        capture_output=False, stderr=subprocess.PIPE)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left" in result.stderr


def test_bad_input_is_one_line_and_exit_1(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_text("no pixels here")
    for target in (str(tmp_path / "missing.jpg"), str(broken)):
        result = vggsim("compare", str(photos[0]), target, "--model", str(model_dir))
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if "warning" not in line]
        assert len(errors) == 1 and Path(target).name in errors[0]
        assert no_traceback(result)


def test_missing_model_is_exit_1_with_advice(tmp_path: Path, photos: list[Path]) -> None:
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(tmp_path / "none"))
    assert result.returncode == 1 and "vggsim export" in result.stderr and no_traceback(result)


def test_usage_errors_exit_2() -> None:
    assert vggsim().returncode == 2
    assert vggsim("compare", "only-one.jpg").returncode == 2
    assert vggsim("export", "--normalization", "tf").returncode == 2
    assert vggsim("store").returncode == 2


def test_export_without_the_extra_prints_the_pip_command(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['tensorflow'] = None\n")
    result = vggsim("export", "--weights", "random", "--out", str(tmp_path / "m"),
                    env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    from vggsim.errors import pip_command

    assert pip_command("export") in result.stderr and no_traceback(result)


def test_doctor_reports_the_model_and_its_dedup_block(model_dir: Path) -> None:
    result = vggsim("doctor", "--model", str(model_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["sha256_ok"] and report["model"]["provider_running"] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in report["providers_available"] and report["cpus"]["usable"] >= 1
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert report["model"]["dedup"]["threshold"] == manifest["dedup"]["threshold"]
    assert report["model"]["random_weights"] is True and report["model"]["note"] == RANDOM_WEIGHTS_NOTE
    text = vggsim("doctor", "--model", str(model_dir))
    assert text.returncode == 0
    assert f"dedup threshold: {manifest['dedup']['threshold']}" in text.stdout
    assert "calibrated on" in text.stdout and RANDOM_WEIGHTS_NOTE in text.stdout


def test_console_script_is_installed() -> None:
    script = shutil.which("vggsim", path=str(Path(sys.executable).parent))
    assert script is not None
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout.startswith("vggsim ")


# -- every numeric option is checked at parse time ----------------------------------------------

NONSENSE = [
    (["search", "q.jpg", "--store", "s", "-k", "0"], "-k"),
    (["search", "q.jpg", "--store", "s", "-k", "-1"], "-k"),
    (["search", "q.jpg", "--store", "s", "-k", str(10**11)], "-k"),
    (["search", "q.jpg", "--store", "s", "-k", "ten"], "-k"),
    (["search", "q.jpg", "--store", "s", "--threads", "0"], "--threads"),
    (["dedup", "--store", "s", "--threshold", "1.5"], "--threshold"),
    (["dedup", "--store", "s", "--threshold", "nan"], "--threshold"),
    (["dedup", "--store", "s", "--threshold", "-1"], "--threshold"),
    (["dedup", "--store", "s", "--threshold", "0"], "--threshold"),
    (["dedup", "--store", "s", "--threshold", "inf"], "--threshold"),
    (["embed", "x", "--store", "s", "--batch-size", "0"], "--batch-size"),
    (["embed", "x", "--store", "s", "--batch-size", "100000"], "--batch-size"),
    (["embed", "x", "--store", "s", "--workers", "-2"], "--workers"),
    (["embed", "x", "--store", "s", "--workers", "0"], "--workers"),
    (["embed", "x", "--store", "s", "--max-pixels", "-1"], "--max-pixels"),
    (["embed", "x", "--store", "s", "--decode-timeout", "0"], "--decode-timeout"),
    (["embed", "x", "--store", "s", "--decode-timeout", "nan"], "--decode-timeout"),
    (["embed", "x", "--store", "s", "--memory-budget", "-5"], "--memory-budget"),
    (["embed", "x", "--store", "s", "--memory-budget", "0"], "--memory-budget"),
    (["embed", "x", "--store", "s", "--commit-rows", "0"], "--commit-rows"),
    (["embed", "x", "--store", "s", "--commit-seconds", "-1"], "--commit-seconds"),
    (["embed", "x", "--store", "s", "--threads", "-3"], "--threads"),
    (["compare", "a", "b", "--threads", "0"], "--threads"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["bench", "--batch-sizes", "0,8"], "--batch-sizes"),
    (["bench", "--threads", "1,x"], "--threads"),
    (["export", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("argv, option", NONSENSE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in NONSENSE])
def test_nonsense_numbers_are_refused_with_exit_2(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = parse_exit(argv, capsys)
    assert code == 2
    assert option in err and ("range" in err or "not a" in err or "needs" in err), err
    assert "Traceback" not in err


def test_k_of_10_to_the_11_never_allocates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused at parse time (exit 2); the library clamps k to the store size besides."""
    code, err = parse_exit(["search", "q.jpg", "--store", str(tmp_path), "-k", str(10**11)], capsys)
    assert code == 2 and "between 1 and" in err


# -- help texts -------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((f"{prefix}{name}", child))
                found.extend(_subparsers(child, f"{prefix}{name} "))
    return found


def test_every_option_has_help_that_shows_its_default() -> None:
    commands = _subparsers(build_parser())
    assert {"export", "compare", "doctor", "bench", "embed", "search", "dedup", "store verify", "store repair"} <= {
        name for name, _ in commands}
    for name, parser in commands:
        formatter = HelpFormatter(name)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            shown = formatter._get_help_string(action)
            assert "default" in shown or "required" in shown, f"{name} {action.option_strings[0]}: {shown}"


def test_help_output_of_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["embed"], ["search"], ["dedup"], ["store", "verify"], ["bench"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code == 0 and "(default:" in out, command


# -- the store extra ---------------------------------------------------------------------------

@pytest.fixture
def no_pyarrow(tmp_path: Path) -> dict[str, str]:
    """A PYTHONPATH whose pyarrow package fails to import, as if the store extra were missing."""
    shadow = tmp_path / "shadow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named pyarrow (shadowed by the test)')\n")
    return {"PYTHONPATH": str(tmp_path / "shadow")}


@pytest.mark.parametrize("command", [["search", "q.jpg", "--store", "s"], ["dedup", "--store", "s"],
                                     ["embed", "x", "--store", "s"], ["store", "verify", "s"]])
def test_search_and_dedup_without_the_store_extra_print_the_pip_hint(command: list[str], no_pyarrow: dict[str, str],
                                                                     tmp_path: Path) -> None:
    # a model that does not exist: the hint must come before any model is loaded
    result = vggsim(*command, *(["--model", str(tmp_path / "none")] if command[0] != "store" else []),
                    env=no_pyarrow, cwd=tmp_path)
    assert result.returncode == 2 and no_traceback(result), result.stderr
    from vggsim.errors import pip_command

    assert pip_command("store") in result.stderr


# -- embed, search, dedup, store: --json on stdout, caveats, exit codes ------------------------

@pytest.fixture(scope="module")
def library(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos and a copy of the first, embedded once; and a file that is not an image."""
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("cli-library")
    (root / "photos").mkdir()
    for photo in photos[:3]:
        shutil.copy(photo, root / "photos" / photo.name)
    Image.open(photos[0]).convert("RGB").save(root / "photos" / "copy_of_first.jpg", quality=95)
    result = vggsim("embed", str(root / "photos"), "--store", str(root / "store"), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    return root


def test_embed_json_is_the_summary_on_stdout_with_the_caveat(model_dir: Path, library: Path) -> None:
    result = vggsim("embed", str(library / "photos"), "--store", str(library / "store"), "--model", str(model_dir),
                    "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["unchanged"] == 4 and summary["embedded"] == 0 and summary["exit_code"] == 0
    assert summary["random_weights"] is True and summary["note"] == RANDOM_WEIGHTS_NOTE


def test_a_rerun_that_still_has_failing_files_says_how_many_and_exits_1(model_dir: Path, photos: list[Path],
                                                                        tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos[0], folder / "good.jpg")
    (folder / "bad.jpg").write_text("not an image")
    base = ["embed", str(folder), "--store", str(tmp_path / "s"), "--model", str(model_dir)]
    first = vggsim(*base, "--quiet")
    assert first.returncode == 1
    assert "failed: " in first.stderr and "bad.jpg: not an image" in first.stderr  # --quiet says why it exits 1
    assert "embedded" not in first.stderr  # ... and nothing else
    rerun = vggsim(*base)
    assert rerun.returncode == 1 and no_traceback(rerun), rerun.stderr
    # the counts agree with the bar's failed=1: the file still fails, though not retried
    assert "0 failed, 1 still failing" in rerun.stderr and "1 unchanged file(s) still fail" in rerun.stderr
    quiet = vggsim(*base, "--quiet")
    assert quiet.returncode == 1 and "1 unchanged file(s) still fail" in quiet.stderr
    summary = json.loads(vggsim(*base, "--json").stdout)
    assert summary["exit_code"] == 1 and summary["still_failing"] + summary["failed"] == 1


def test_the_progress_bar_has_a_total_and_an_eta(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    pytest.importorskip("pyarrow")
    result = vggsim("embed", *map(str, photos[:3]), "--store", str(tmp_path / "s"), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert "3/3" in result.stderr and "<" in result.stderr  # tqdm's [elapsed<remaining]
    assert "random-weight model" in result.stderr


def test_embed_list_with_a_nul_byte_or_bad_utf8_is_not_a_traceback(model_dir: Path, photos: list[Path],
                                                                    tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    nul = tmp_path / "nul.txt"
    nul.write_bytes(str(photos[0]).encode() + b"\n/tmp/a\x00b.jpg\n")
    refused = vggsim("embed", "--from", str(nul), "--store", str(tmp_path / "s"), "--model", str(model_dir), "--quiet")
    errors = [line for line in refused.stderr.splitlines() if "warning" not in line]
    assert refused.returncode == 1 and no_traceback(refused) and len(errors) == 1, refused.stderr
    assert "nul.txt" in errors[0] and "NUL" in errors[0]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(str(photos[0]).encode() + b"\n" + bytes(tmp_path) + b"/caf\xe9.jpg\n")
    result = vggsim("embed", "--from", str(bad), "--store", str(tmp_path / "s"), "--model", str(model_dir), "--json")
    assert result.returncode == 1 and no_traceback(result) and "internal error" not in result.stderr, result.stderr
    summary = json.loads(result.stdout)  # the odd name is read, reported missing, and printed losslessly
    odd = bytes(tmp_path) + b"/caf\xe9.jpg"  # JSON: display text, and the exact bytes in path_bytes_b64
    assert summary["embedded"] == 1 and [f["path"] for f in summary["failures"]] == [os.fsdecode(tmp_path) + "/caf\\xe9.jpg"]
    assert [base64.b64decode(f["path_bytes_b64"]) for f in summary["failures"]] == [odd]


def test_search_json_on_stdout_with_the_caveat_and_plot(model_dir: Path, library: Path, photos: list[Path],
                                                        tmp_path: Path) -> None:
    plot = tmp_path / "missing" / "search.png"
    result = vggsim("search", str(photos[0]), "--store", str(library / "store"), "--model", str(model_dir),
                    "-k", "3", "--json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["random_weights"] is True and data["note"] == RANDOM_WEIGHTS_NOTE
    matches = data["results"][0]["matches"]
    assert {Path(m["path"]).name for m in matches[:2]} == {photos[0].name, "copy_of_first.jpg"}
    assert Image.open(plot).width > 3 * 256
    text = vggsim("search", str(photos[0]), "--store", str(library / "store"), "--model", str(model_dir), "-k", "1")
    assert text.returncode == 0 and "random weights" in text.stderr


def test_search_k_beyond_the_store_is_clamped(model_dir: Path, library: Path, photos: list[Path]) -> None:
    result = vggsim("search", str(photos[0]), "--store", str(library / "store"), "--model", str(model_dir),
                    "-k", "1000000", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["results"][0]["matches"]) == 4


def test_dedup_json_on_stdout_out_csv_plot_into_missing_folders(model_dir: Path, library: Path,
                                                                tmp_path: Path) -> None:
    out, csv_out, plot = tmp_path / "a" / "d.json", tmp_path / "b" / "d.csv", tmp_path / "c" / "d.png"
    result = vggsim("dedup", "--store", str(library / "store"), "--model", str(model_dir), "--threshold", "0.9995",
                    "--json", "--out", str(out), "--csv", str(csv_out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == json.loads(out.read_text())
    assert data["random_weights"] is True and data["note"] == RANDOM_WEIGHTS_NOTE
    assert len(data["groups"]) == 2 and csv_out.read_text().startswith("group,path,score")
    assert Image.open(plot).format == "PNG"
    assert "random-weight model" in result.stderr  # dedup's text output says so too


def test_dedup_default_threshold_is_the_manifests_and_needs_the_stores_model(model_dir: Path, library: Path,
                                                                             tmp_path: Path) -> None:
    result = vggsim("dedup", "--store", str(library / "store"), "--model", str(model_dir), "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert json.loads(result.stdout)["threshold"] == manifest["dedup"]["threshold"]
    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other)
    changed = json.loads((other / "manifest.json").read_text())
    changed["model"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(changed))
    refused = vggsim("dedup", "--store", str(library / "store"), "--model", str(other))
    assert refused.returncode == 1 and no_traceback(refused)


def test_store_verify_and_repair_exit_codes(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    store = tmp_path / "s"
    assert vggsim("embed", *map(str, photos[:2]), "--store", str(store), "--model", str(model_dir),
                  "--quiet").returncode == 0
    sound = vggsim("store", "verify", str(store))
    assert sound.returncode == 0 and no_traceback(sound), sound.stderr
    shard = next(p for p in sorted(store.rglob("*")) if p.is_file() and p.suffix == ".npy")
    shard.write_bytes(shard.read_bytes()[:-16])  # damage a committed shard
    damaged = vggsim("store", "verify", str(store))
    assert damaged.returncode == 1 and no_traceback(damaged)
    assert shard.name in damaged.stdout + damaged.stderr
    repaired = vggsim("store", "repair", str(store))
    assert repaired.returncode == 0 and no_traceback(repaired), repaired.stderr
    assert vggsim("store", "verify", str(store)).returncode == 0
    again = vggsim("embed", *map(str, photos[:2]), "--store", str(store), "--model", str(model_dir), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["embedded"] >= 1


def test_a_garbled_store_is_one_line_exit_1(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    store = tmp_path / "s"
    store.mkdir()
    (store / "store.json").write_text("{ not json")
    for command in (["search", str(photos[0]), "--store", str(store), "--model", str(model_dir)],
                    ["dedup", "--store", str(store), "--threshold", "0.9"], ["store", "verify", str(store)]):
        result = vggsim(*command)
        assert result.returncode == 1 and no_traceback(result), (command, result.stderr)


def test_search_with_other_preprocessing_than_the_store_is_refused(model_dir: Path, library: Path,
                                                                  photos: list[Path]) -> None:
    result = vggsim("search", str(photos[0]), "--store", str(library / "store"), "--model", str(model_dir),
                    "--exif-transpose")
    assert result.returncode == 1 and no_traceback(result) and "exif_transpose" in result.stderr


@pytest.mark.parametrize("command", ["compare", "search", "dedup"])
def test_plots_of_a_random_weight_model_say_so_in_the_title(command: str, model_dir: Path, library: Path,
                                                            photos: list[Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.tools import plot

    titles: list[str | None] = []
    monkeypatch.setattr(plot, "contact_sheet", lambda rows, out, title=None: titles.append(title))
    model = ["--model", str(model_dir)]
    argv = {"compare": ["compare", str(photos[0]), str(photos[1]), *model],
            "search": ["search", str(photos[0]), "--store", str(library / "store"), *model],
            "dedup": ["dedup", "--store", str(library / "store"), "--threshold", "0.9995", *model]}[command]
    assert main([*argv, "--plot", str(tmp_path / "p.png")]) == 0
    assert len(titles) == 1 and titles[0] is not None and titles[0].startswith("RANDOM WEIGHTS")


def test_handlers_reach_stores_only_through_the_library() -> None:
    """Handlers parse, call vggsim.collection (or the store's verify/repair) and print: no handler
    imports the pipeline, the input listing, search/dedup internals or the store's internals."""
    import ast

    import vggsim.cli

    internals = {"pipeline", "sources", "search", "dedup", "budget", "store_format", "store_reader",
                 "store_writer", "store_journal", "store_repair"}
    for module in Path(vggsim.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                assert node.module.split(".")[0] not in internals, (module.name, node.module)
