"""Inputs that cannot hang or repeat, odd bytes, bad items, changing files, NaN, and memory.

Each test is named after the defect of issue 7 it covers and fails on the code before the fix.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vggsim import Embedder, ImageError, PreprocessSpec, cosine_similarity
from vggsim.images.preprocess import RESAMPLE_FILTERS, prepare, to_rgb
from vggsim.ingest.sources import iter_inputs


def bounded(seconds: float, function: Callable[[], Any]) -> Any:
    """Run ``function`` in a daemon thread; fail (instead of hanging the suite) past ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"did not finish within {seconds} s (hang)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- the conversions as they were before the strip rewrite, kept verbatim as the reference ---

_OLD_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _old_wide_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    if values.ndim != 2:
        values = values.reshape(image.size[1], image.size[0])
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    peak = float(values.max(initial=0.0))
    if peak > 65535.0:
        values = values * (255.0 / peak)
    elif peak > 255.0:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _old_to_rgb(image: Image.Image, alpha: str = "white") -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _OLD_WIDE_MODES:
        return _old_wide_to_l(image).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    if alpha == "drop":
        return rgba.convert("RGB")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _random_modes(rng: np.random.Generator, width: int, height: int) -> dict[str, Image.Image]:
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    # 16-bit values right at the /257 rounding edges (257k+128 rounds down, 257k+129 up)
    k = rng.integers(0, 255, (height, width))
    edges = (257 * k + rng.choice([0, 127, 128, 129, 130, 256], (height, width))).clip(0, 65535)
    small = rng.integers(0, 256, (height, width))  # a wide image whose peak is <= 255
    floats = rng.normal(30000, 30000, (height, width)).astype(np.float32)
    floats.flat[:: 7] = np.nan
    floats.flat[3:: 11] = np.inf
    floats.flat[5:: 13] = -np.inf
    palette_transparent = rgb.convert("P")
    palette_transparent.info["transparency"] = 3
    return {
        "1": rgb.convert("1"), "L": rgb.convert("L"), "P": rgb.convert("P"), "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"), "RGBA": rgba, "LA": rgba.convert("LA"),
        "RGBa": rgba.convert("RGBa"), "PA": rgba.convert("PA"), "P+transparency": palette_transparent,
        "I;16": Image.fromarray(edges.astype(np.uint16)), "I;16B": Image.fromarray(edges.astype(">u2")),
        "I;16 small": Image.fromarray(small.astype(np.uint16)),
        "I": Image.fromarray(edges.astype(np.int32) - 3000),  # negatives clip to 0
        "I over 65535": Image.fromarray(rng.integers(-5, 3_000_000, (height, width)).astype(np.int32)),
        "F": Image.fromarray(floats),
        "F over 65535": Image.fromarray(rng.uniform(0, 1e6, (height, width)).astype(np.float32)),
    }


@pytest.mark.parametrize("size", [(97, 31), (31, 97), (300, 301), (640, 90), (90, 640), (1, 1), (5, 400)])
def test_strip_conversion_is_bit_identical_to_the_whole_image_rule(size: tuple[int, int],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.images import convert

    monkeypatch.setattr(convert, "STRIP_PIXELS", 1500)  # many strips, odd remainders
    rng = np.random.default_rng(sum(size))
    for name, image in _random_modes(rng, *size).items():
        for alpha in ("white", "drop"):
            expected = _old_to_rgb(image, alpha)
            assert np.array_equal(np.asarray(to_rgb(image, alpha)), np.asarray(expected)), (name, alpha)
            for resample in RESAMPLE_FILTERS:
                spec = PreprocessSpec(size=(60, 44), resample=resample, alpha=alpha)
                old = np.asarray(expected.resize(spec.size, resample=RESAMPLE_FILTERS[resample]), np.float32)
                assert np.array_equal(prepare(image, spec), old), (name, alpha, resample)
        default = np.asarray(_old_to_rgb(image).resize((224, 224), Image.Resampling.BICUBIC), np.float32)
        assert np.array_equal(prepare(image), default), name


def test_strip_conversion_of_a_wide_image_makes_no_full_size_float64_copy() -> None:
    import tracemalloc

    wide = Image.fromarray((np.arange(3000 * 3000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(3000, 3000))
    tracemalloc.start()  # numpy reports its buffers to tracemalloc; one float64 copy is 72 MB here
    try:
        prepare(wide)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20, f"numpy peak {peak / 2**20:.0f} MB while converting a 9 MP 16-bit image"


# --- globs, folder walks and list files ---


def _looped_tree(root: Path, photo: Path) -> Path:
    top = root / "a"
    (top / "b").mkdir(parents=True)
    (top / "x.jpg").write_bytes(photo.read_bytes())
    (top / "b" / "y.jpg").write_bytes(photo.read_bytes())
    (top / "loop1").symlink_to(top, target_is_directory=True)
    (top / "b" / "loop2").symlink_to(top, target_is_directory=True)
    (top / "alias.jpg").symlink_to(top / "x.jpg")  # the same file under a second name
    return top


def test_recursive_glob_through_symlink_loops_ends_and_yields_each_file_once(tmp_path: Path, photos: list[Path]) -> None:
    top = _looped_tree(tmp_path, photos[0])
    found = bounded(30, lambda: list(iter_inputs([str(top / "**" / "*.jpg")])))
    assert sorted(p.resolve().name for p in found) == ["x.jpg", "y.jpg"]  # alias.jpg is x.jpg
    walked = bounded(30, lambda: list(iter_inputs([str(top), str(top / "*" / "*.jpg")])))
    assert sorted(p.resolve().name for p in walked) == ["x.jpg", "y.jpg"]


def test_one_symlink_loop_does_not_repeat_a_file(tmp_path: Path, photos: list[Path]) -> None:
    top = tmp_path / "a"
    top.mkdir()
    (top / "x.jpg").write_bytes(photos[0].read_bytes())
    (top / "loop").symlink_to(top, target_is_directory=True)
    found = bounded(30, lambda: list(iter_inputs([str(top / "**" / "*.jpg"), str(top / "x.jpg")])))
    assert [p.name for p in found] == ["x.jpg"]  # main: 41 copies of the same file


def test_missing_names_are_kept_once_to_be_reported(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.jpg")
    assert [str(p) for p in iter_inputs([gone, gone])] == [gone]


def test_non_utf8_names_in_a_list_file_round_trip(tmp_path: Path, photos: list[Path]) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.jpg"
    with open(raw, "wb") as fp:
        fp.write(photos[0].read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"# photos\r\n" + raw + b"\r\n\n")
    found = list(iter_inputs([], list_file=str(listing)))
    assert [os.fsencode(p) for p in found] == [raw] and found[0].exists()


def test_stdin_list_is_read_as_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.fsencode(tmp_path) + b"/\xe9t\xe9.png"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw + b"\n"), encoding="utf-8"))
    assert [os.fsencode(p) for p in iter_inputs([], list_file="-")] == [raw]


def test_a_nul_byte_in_a_list_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    from vggsim.errors import VggsimError
    from vggsim.ingest.sources import InputError

    listing = tmp_path / "list.txt"
    listing.write_bytes(b"a.jpg\nb\x00.jpg\n")
    with pytest.raises(InputError, match=r"list.txt line 2: .*NUL") as info:
        list(iter_inputs([], list_file=str(listing)))
    assert isinstance(info.value, VggsimError) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="cannot read the list file"):
        list(iter_inputs([], list_file=str(tmp_path / "no-such-list.txt")))


# --- iter_embeddings: bad items, a failing input iterable ---


def test_bad_items_become_bad_input_results_and_never_hang(embedder: Embedder, photos: list[Path]) -> None:
    from vggsim.ingest.pipeline import iter_embeddings

    items: list[Any] = [str(photos[0]), 5, None, object(), "a\0b.jpg", b"raw.jpg", photos[1]]
    results = bounded(60, lambda: list(iter_embeddings(embedder, items, batch_size=2, workers=2)))
    assert len(results) == len(items)
    kinds = sorted("ok" if r.ok else r.error.kind for r in results)
    assert kinds == ["bad_input"] * 4 + ["not_found"] + ["ok"] * 2  # bytes are a path (F-api-2): raw.jpg is missing
    assert all(r.info is None for r in results if not r.ok)


def test_an_exception_in_the_input_iterable_is_reraised_in_the_caller(embedder: Embedder, photos: list[Path]) -> None:
    from vggsim.ingest.pipeline import iter_embeddings

    def items() -> Iterator[Path]:
        yield photos[0]
        raise RuntimeError("listing failed")

    seen: list[Any] = []

    def consume() -> None:
        for result in iter_embeddings(embedder, items(), workers=2):
            seen.append(result)

    with pytest.raises(RuntimeError, match="listing failed"):
        bounded(60, consume)
    assert [r.ok for r in seen] == [True]


# --- a file that changes while it is read; what an error records ---


def _half_png(path: Path, photo: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").save(buffer, format="PNG")
    whole = buffer.getvalue()
    path.write_bytes(whole[: len(whole) // 2])
    return whole


def test_a_file_written_while_read_is_changed_and_retryable(embedder: Embedder, photos: list[Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.ingest import pipeline
    from vggsim.ingest import reading
    from vggsim.errors import RETRYABLE_ERROR_KINDS

    path = tmp_path / "growing.png"
    whole = _half_png(path, photos[0])
    before = path.stat()
    real_probe = reading.probe

    def writer_finishes(*args: Any) -> Any:  # the writer completes the file between stat and read
        path.write_bytes(whole)
        os.utime(path, ns=(before.st_mtime_ns + 10**9, before.st_mtime_ns + 10**9))
        return real_probe(*args)

    monkeypatch.setattr(reading, "probe", writer_finishes)
    [result] = bounded(60, lambda: list(pipeline.iter_embeddings(embedder, [path], workers=1)))
    assert not result.ok and result.error.kind == "changed", result.error
    assert result.error.kind in RETRYABLE_ERROR_KINDS
    assert result.info is not None and (result.info.size, result.info.mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_an_error_records_what_was_stated_before_the_read(embedder: Embedder, photos: list[Path], tmp_path: Path) -> None:
    from vggsim.ingest.pipeline import iter_embeddings

    cut = tmp_path / "cut.png"
    _half_png(cut, photos[0])
    stat = cut.stat()
    results = {Path(r.path).name: r for r in bounded(60, lambda: list(
        iter_embeddings(embedder, [cut, tmp_path / "missing.png"], workers=1)))}
    assert results["cut.png"].error.kind == "truncated"  # type: ignore[union-attr]
    info = results["cut.png"].info
    assert info is not None and (info.size, info.mtime_ns, info.sha256, info.width, info.height) == (
        stat.st_size, stat.st_mtime_ns, "", 0, 0)
    assert results["missing.png"].error.kind == "not_found" and results["missing.png"].info is None  # type: ignore[union-attr]


# --- NaN and infinity ---


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_input_array_raises_bad_array(embedder: Embedder, value: float) -> None:
    batch = np.full((2, 224, 224, 3), 100.0, np.float32)
    batch[1, 5, 7, 2] = value
    with pytest.raises(ImageError) as info:
        embedder.run(batch)
    assert info.value.kind == "bad_array" and "image 1" in str(info.value)
    with pytest.raises(ImageError):
        embedder.embed(batch)


def test_cosine_similarity_never_returns_nan() -> None:
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values \(row 1\)"):
        cosine_similarity([[1.0, 2.0], [np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"y holds NaN or infinite values \(row 0\)"):
        cosine_similarity([[1.0, 2.0]], [[np.inf, 1.0]])
    huge = cosine_similarity([[1e300, 1e300], [1.0, 1.0], [0.0, 0.0]])
    assert not np.isnan(huge).any() and huge[0, 1] == pytest.approx(1.0) and huge[2, 2] == 0.0


# --- one decode path; memory admitted by a budget ---


def test_the_pipeline_decodes_through_the_embedders_path(embedder: Embedder, tmp_path: Path, photos: list[Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.images import preprocess
    from vggsim.ingest.pipeline import iter_embeddings

    rgba = Image.open(photos[0]).convert("RGBA")
    rgba.putalpha(90)
    files = [tmp_path / "alpha.png", tmp_path / "wide.tif"]
    rgba.save(files[0])
    Image.fromarray(np.asarray(rgba.convert("L"), np.uint16) * 200).save(files[1])
    calls: list[str] = []
    real = preprocess.open_image

    def counting(source: Any, *args: Any, **kw: Any) -> Image.Image:
        calls.append(type(source).__name__)
        return real(source, *args, **kw)

    monkeypatch.setattr(preprocess, "open_image", counting)
    results = sorted(bounded(60, lambda: list(iter_embeddings(embedder, files, workers=2))), key=lambda r: r.path)
    assert len(calls) == 2, "the pipeline must decode through preprocess (the Embedder's path)"
    expected = embedder.embed(files)
    assert np.allclose(np.stack([r.vector for r in results]), expected, rtol=1e-5, atol=1e-4)


def test_decodes_are_admitted_by_memory_not_by_worker_count(embedder: Embedder, photos: list[Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.ingest import pipeline
    from vggsim.images.budget import MemoryBudget

    budgets: list[MemoryBudget] = []

    class Recording(MemoryBudget):
        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            self.needs: list[int] = []
            budgets.append(self)

        def acquire(self, need: int, *args: Any) -> Any:
            self.needs.append(need)
            return super().acquire(need, *args)

    monkeypatch.setattr(pipeline, "MemoryBudget", Recording)
    files = photos[:3]
    # a budget smaller than any one image: each runs alone, none is refused for it
    results = bounded(120, lambda: list(pipeline.iter_embeddings(embedder, files, workers=4, memory_budget=1)))
    assert len(results) == len(files) and all(r.ok for r in results)
    [budget] = budgets
    assert budget.peak == max(budget.needs) and budget.in_use == 0
    assert min(budget.needs) > min(p.stat().st_size for p in files)  # file bytes + pixels


def test_memory_need_is_read_from_the_header_before_decoding(tmp_path: Path) -> None:
    from vggsim.images.budget import decode_need
    from vggsim.images.decode import probe
    from support import png_header_claiming

    path = tmp_path / "big.png"
    path.write_bytes(png_header_claiming(9000, 9000))  # declares 81 MP RGB; no pixels behind it
    header = probe(path, str(path))
    assert (header.width, header.height, header.mode) == (9000, 9000, "RGB")
    need = decode_need(header, path.stat().st_size, PreprocessSpec())
    assert 9000 * 9000 * 4 <= need < 9000 * 9000 * 5
    with pytest.raises(ImageError, match="over the limit"):
        probe(path, str(path), max_pixels=1000)


def test_a_failed_decode_keeps_no_pillow_frames_alive(tmp_path: Path, photos: list[Path], embedder: Embedder) -> None:
    from vggsim import load_image
    from vggsim.ingest.pipeline import iter_embeddings

    cut = tmp_path / "cut.png"
    _half_png(cut, photos[0])
    with pytest.raises(ImageError) as info:
        load_image(cut)
    # a chained exception's traceback holds the decoder's frames (a partly decoded image,
    # the file's bytes): measured on the Pillow corpus, RSS climbed to 3.4 GB through them
    assert info.value.__context__ is None and info.value.__cause__ is None
    [result] = bounded(60, lambda: list(iter_embeddings(embedder, [cut], workers=1)))
    assert result.error is not None and result.error.__traceback__ is None and result.error.__context__ is None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_a_short_raw_blp_is_refused_before_its_declared_pixels_are_allocated() -> None:
    import subprocess

    # 1 x 80,000,000 palette pixels declared, 1.2 KB of data: Pillow's Python BLP decoder
    # allocated the whole image (and more) before finding the data missing.
    script = (
        "import struct\n"
        "from vggsim import load_image, ImageError\n"
        "w, h = 1, 80_000_000\n"
        "data = (b'BLP1' + struct.pack('<iIIIii', 1, 0, w, h, 5, 0) + struct.pack('<16I', 1180, *[0] * 15)\n"
        "        + struct.pack('<16I', w * h, *[0] * 15) + bytes(1088))\n"
        "try:\n    load_image(data)\nexcept ImageError as exc:\n    print(exc.kind)\n"
        # VmHWM: this process's own high-water mark (ru_maxrss would carry pytest's across exec)
        "print([int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    kind, peak_mb = out.stdout.split()
    assert kind == "truncated" and int(peak_mb) < 200, (kind, peak_mb, out.stderr[-500:])
