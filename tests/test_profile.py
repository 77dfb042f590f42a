"""Session profiles: ``edge`` changes where memory comes from, never the vectors.

The edge profile runs the graph the default profile builds (onnxruntime's full
optimisation), saved once and reloaded without optimisation, on the same threads: the same
kernels on the same data, so the vectors are compared for exact (bitwise) equality, not
within a tolerance. A tolerance would hide the one thing that could go wrong here: a saved
graph that differs from the one the default profile runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from vggsim import Embedder
from vggsim.cli import main
from vggsim.model.session import create_session, session_options
from vggsim.model.profiles import PROFILES, graph_cache_dir, session_profile


@pytest.fixture
def own_model(model_dir: Path, tmp_path: Path) -> Path:
    """The test model in a folder of this test's own, so the saved graph lands there."""
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink((model_dir / "model.onnx").resolve(), folder / "model.onnx")
    shutil.copy(model_dir / "manifest.json", folder / "manifest.json")
    return folder


def saved_graphs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("model.optimized-"))


def test_edge_vectors_are_the_default_vectors_bit_for_bit(own_model: Path, photos: list[Path]) -> None:
    images = [*photos[:2], np.random.default_rng(3).uniform(0, 255, (224, 224, 3)).astype(np.float32)]
    expected = Embedder(own_model, providers="cpu").embed(images)
    assert saved_graphs(own_model) == []  # the default profile saves nothing
    first = Embedder(own_model, providers="cpu", profile="edge")  # optimises and saves the graph
    [graph] = saved_graphs(own_model)
    assert {p.name for p in graph.iterdir()} == {"model.onnx", "model.data"}
    assert (graph / "model.data").stat().st_size > 0.9 * (own_model / "model.onnx").stat().st_size  # weights outside
    again = Embedder(own_model, providers="cpu", profile="edge")  # loads the saved graph
    assert first.profile == again.profile == "edge"
    np.testing.assert_array_equal(first.embed(images), expected)
    np.testing.assert_array_equal(again.embed(images), expected)
    store_format = pytest.importorskip("vggsim.store.format")  # a store made with either profile takes the other
    same = store_format.StoreIdentity.of(again) == store_format.StoreIdentity.of(Embedder(own_model, providers="cpu"))
    assert same


def test_edge_saves_to_the_user_cache_when_the_model_folder_is_read_only(
        own_model: Path, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == own_model
                        else real_access(path, mode, **kw))
    monkeypatch.setenv("VGGSIM_CACHE_DIR", str(tmp_path / "cache"))
    assert graph_cache_dir(own_model / "model.onnx", "k").parent == tmp_path / "cache" / "graphs"
    vector = Embedder(own_model, providers="cpu", profile="edge").embed_one(photos[0])
    assert saved_graphs(own_model) == []
    [graph] = list((tmp_path / "cache" / "graphs").iterdir())
    assert (graph / "model.data").is_file()
    np.testing.assert_array_equal(Embedder(own_model, providers="cpu", profile="edge").embed_one(photos[0]), vector)


def test_an_unknown_profile_is_a_value_error_naming_the_choices(tmp_path: Path) -> None:
    # Refused before the model is read: the folder does not even exist.
    with pytest.raises(ValueError, match="Unknown session profile 'tiny': use one of default, edge"):
        Embedder(tmp_path / "no-model", profile="tiny")
    with pytest.raises(ValueError, match="default, edge"):
        create_session(tmp_path / "no-model.onnx", "cpu", profile="EDGY")
    assert session_profile("EDGE").name == "edge"  # names are case-insensitive, like the providers


def test_the_default_profile_is_onnxruntimes_defaults() -> None:
    plain, default = ort.SessionOptions(), session_options()
    assert (default.enable_cpu_mem_arena, default.enable_mem_pattern) == (plain.enable_cpu_mem_arena,
                                                                          plain.enable_mem_pattern) == (True, True)
    edge = session_options(profile="edge")
    assert not edge.enable_cpu_mem_arena and not edge.enable_mem_pattern
    assert PROFILES["default"].cached_graph is False and PROFILES["edge"].cached_graph is True


def test_cli_profile_flag(own_model: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compare", str(photos[0]), str(photos[1]), "--model", str(own_model), "--profile", "tiny"])
    assert exited.value.code == 2 and "choose from 'default', 'edge'" in capsys.readouterr().err
    base = [sys.executable, "-m", "vggsim", "compare", str(photos[0]), str(photos[1]), "--model", str(own_model),
            "--providers", "cpu", "--json"]
    scores = {}
    for profile in ("default", "edge"):
        result = subprocess.run([*base, "--profile", profile], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        scores[profile] = json.loads(result.stdout)["score"]
    assert scores["edge"] == scores["default"] and len(saved_graphs(own_model)) == 1
    doctor = subprocess.run([sys.executable, "-m", "vggsim", "doctor", "--model", str(own_model), "--profile", "edge",
                             "--json"], capture_output=True, text=True, timeout=600)
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["model"]["profile"] == "edge"


def test_a_damaged_saved_graph_is_made_again(own_model: Path, photos: list[Path]) -> None:
    expected = Embedder(own_model, providers="cpu", profile="edge").embed_one(photos[0])
    [graph] = saved_graphs(own_model)
    (graph / "model.data").write_bytes(b"truncated")
    with pytest.warns(RuntimeWarning, match="could not be loaded"):
        again = Embedder(own_model, providers="cpu", profile="edge")
    np.testing.assert_array_equal(again.embed_one(photos[0]), expected)
    [graph] = saved_graphs(own_model)
    assert (graph / "model.data").stat().st_size > 1_000_000  # saved again, whole


def test_edge_with_nowhere_to_save_runs_as_the_default(own_model: Path, photos: list[Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import vggsim.model.session

    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder cannot be made under a file, even as root
    monkeypatch.setattr(vggsim.model.session, "graph_cache_dir", lambda path, key: blocker / "graphs" / key)
    vector = Embedder(own_model, providers="cpu", profile="edge").embed_one(photos[0])
    np.testing.assert_array_equal(vector, Embedder(own_model, providers="cpu").embed_one(photos[0]))
    assert saved_graphs(own_model) == [] and blocker.read_text() == "x"
