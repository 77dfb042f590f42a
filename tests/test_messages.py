"""Messages found wanting by fault injection: install hints that work, empty stores said so,
options that cannot apply said so, decoder noise tied to its file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vggsim import errors


def test_missing_extra_hint_names_the_checkout_vggsim_was_installed_from(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    checkout = tmp_path / "my checkout"
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    error = errors.MissingExtraError("store", "vggsim search", "pyarrow")
    assert error.pip_command == f"pip install -e '{checkout}[store]'"
    assert error.pip_command in str(error) and "\n" not in str(error)
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": checkout.as_uri(), "dir_info": {}})
    assert errors.MissingExtraError("store", "x", "pyarrow").pip_command == f"pip install '{checkout}[store]'"


def test_missing_extra_hint_falls_back_to_the_index_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_direct_url", lambda: None)
    assert errors.MissingExtraError("store", "x", "pyarrow").pip_command == "pip install 'vggsim[store]'"
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": "https://example.org/vggsim.tar.gz"})
    assert errors.MissingExtraError("gpu", "x", "y").pip_command == "pip install 'vggsim[gpu]'"


def test_direct_url_is_read_from_the_installed_distribution() -> None:
    data = errors._direct_url()  # this test run's vggsim: installed from the checkout by mkvenv/quickstart
    assert data is None or isinstance(data, dict)
    if data is not None:
        json.dumps(data)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True, timeout=600)


def test_search_on_a_store_with_no_embeddings_says_so(tmp_path: Path, model_dir: Path, photos: list[Path]) -> None:
    pytest.importorskip("pyarrow")
    store = str(tmp_path / "empty.vgg")
    made = _cli("embed", str(tmp_path / "nope.jpg"), "--store", store, "--model", str(model_dir), "--quiet")
    assert made.returncode == 1, made.stderr  # one failed record, no embeddings
    text = _cli("search", str(photos[0]), "--store", store, "--model", str(model_dir))
    assert text.returncode == 0, text.stderr
    assert f"{store} holds no embeddings yet" in text.stderr
    as_json = _cli("search", str(photos[0]), "--store", store, "--model", str(model_dir), "--json")
    data = json.loads(as_json.stdout)
    assert data["embeddings"] == 0 and data["warnings"] == [f"{store} holds no embeddings yet"]


def test_float16_on_an_existing_float32_store_is_not_silently_ignored(tmp_path: Path, model_dir: Path,
                                                                       photos: list[Path]) -> None:
    pytest.importorskip("pyarrow")
    store = str(tmp_path / "s.vgg")
    assert _cli("embed", str(photos[0]), "--store", store, "--model", str(model_dir), "--quiet").returncode == 0
    result = _cli("embed", str(photos[1]), "--store", store, "--model", str(model_dir), "--float16", "--json")
    assert result.returncode == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert any("float16 applies to new stores only" in n and "float32" in n for n in notes), notes
    text = _cli("embed", str(photos[2]), "--store", store, "--model", str(model_dir), "--float16")
    assert "float16 applies to new stores only" in text.stderr


from support import CORPUS  # noqa: E402


def test_decoder_warnings_name_their_file_instead_of_anonymous_stderr(embedder: object, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    import warnings

    from vggsim.ingest import pipeline
    from vggsim.errors import ImageError

    def warn_then_fail(path: Path, *args: object) -> object:
        warnings.warn(f"Tag data larger than file. Skipping tag {path.name}", UserWarning, stacklevel=2)
        raise ImageError(str(path), "decode_error", "cannot decode the image")

    monkeypatch.setattr(pipeline, "read_file", warn_then_fail)
    names = [str(tmp_path / f"f{n}.tif") for n in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        results = list(pipeline.iter_embeddings(embedder, names, workers=2))
    for result in results:
        assert result.error is not None
        assert f"decoder warnings: Tag data larger than file. Skipping tag {Path(result.path).name}" in result.error.reason
    assert "Tag data" not in capfd.readouterr().err  # nothing anonymous on stderr


@pytest.mark.skipif(not CORPUS.is_dir(), reason="needs ../shared/corpus (the Pillow test images)")
def test_libtiff_messages_do_not_reach_stderr(tmp_path: Path, model_dir: Path) -> None:
    files = sorted(str(p) for p in CORPUS.glob("crash-*.tif"))[:20]
    result = subprocess.run([sys.executable, "-m", "vggsim", "embed", *files, "--store", str(tmp_path / "s.vgg"),
                             "--json", "--model", str(model_dir)], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    noise = [line for line in result.stderr.splitlines() if not line.startswith("vggsim:")]
    assert not [line for line in noise if "TIFF" in line or "_tiffReadProc" in line or "Decode" in line], noise


def test_require_names_a_broken_dependency_instead_of_calling_the_extra_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On the GPU machine `vggsim serve` said "fastapi is not installed" while fastapi was
    # installed and its own dependency (opentelemetry-api) was not.
    (tmp_path / "vggsim_fake_web.py").write_text("import vggsim_fake_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(errors.MissingExtraError) as caught:
        errors.require("vggsim_fake_web", "serve", "vggsim serve")
    message = str(caught.value)
    assert "vggsim_fake_web is installed but does not import" in message
    assert "vggsim_fake_missing_dependency" in message and "not installed)" not in message
    with pytest.raises(errors.MissingExtraError, match=r"vggsim_fake_absent is not installed"):
        errors.require("vggsim_fake_absent", "serve", "vggsim serve")


def test_the_offline_imagenet_export_error_is_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI escapes newlines in an error (one line per error): a message written as a paragraph
    # showed as one line full of literal "\n"
    from vggsim.export import keras_model
    from vggsim.export.errors import WeightsError

    class OfflineKeras:
        class utils:
            @staticmethod
            def get_file(*args: object, **kw: object) -> str:
                raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras_model, "_notop_origin", lambda: "https://example.invalid/notop.h5")
    with pytest.raises(WeightsError) as caught:
        keras_model.fetch_imagenet_weights(OfflineKeras())
    message = str(caught.value)
    assert "\n" not in message and keras_model.NOTOP_FILE in message and "--weights random" in message
