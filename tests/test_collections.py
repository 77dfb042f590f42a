"""Collections: discovery, the streaming pipeline, bad files, and the crash-safe store."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import png_header_claiming, run_cli
from vggsim import Embedder, StoreError
from vggsim.ingest.pipeline import iter_embeddings
from vggsim.ingest.sources import iter_inputs
from vggsim.store import Store, StoreIdentity, StoreWriter

pytest.importorskip("pyarrow")


def make_bad_folder(root: Path, photo: Path) -> dict[str, str]:
    """The issue's fixture list; returns file name -> expected status ('ok' or an error kind)."""
    root.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(photo).convert("RGB")
    expected: dict[str, str] = {}

    def save(name: str, image: Image.Image, status: str = "ok", **kw: object) -> None:
        image.save(root / name, **kw)
        expected[name] = status

    (root / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "empty"
    (root / "text.jpg").write_text("not an image\n")
    expected["text.jpg"] = "not_an_image"
    for fmt in ("jpeg", "png"):
        buffer = io.BytesIO()
        rgb.save(buffer, format=fmt)
        (root / f"truncated.{fmt}").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        expected[f"truncated.{fmt}"] = "truncated"
    save("cmyk.jpg", rgb.convert("CMYK"))
    save("sixteen.png", Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257))
    palette = rgb.convert("P")
    save("palette_transparent.png", palette, transparency=0)
    frames = [rgb.resize((64, 64)), rgb.resize((64, 64)).rotate(90)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:])
    save("pages.tif", frames[0], save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    save("rotated.jpg", rgb, exif=exif.tobytes())
    save("one.png", Image.new("RGB", (1, 1), (1, 2, 3)))
    save("long.png", Image.new("RGB", (20000, 1), (1, 2, 3)))
    (root / "bomb.png").write_bytes(png_header_claiming(60_000, 60_000))
    expected["bomb.png"] = "too_large"
    (root / "dir.jpg").mkdir()
    expected["dir.jpg"] = "is_directory"
    (root / "page.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n")
    expected["page.eps"] = "format_refused"
    return expected


def test_iter_inputs_files_folders_globs_and_lists(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jpg", "a/b/two.png", "a/notes.txt", "a/.hidden.jpg"):
        shutil.copy(photos[0], tmp_path / name)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n{tmp_path / 'a/one.jpg'}\n\n{tmp_path / 'gone.jpg'}\n")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_inputs([str(tmp_path / "a")])]
    assert found == ["a/one.jpg", "a/b/two.png"]
    everything = [p.name for p in iter_inputs([str(tmp_path / "a")], all_files=True)]
    assert sorted(everything) == ["notes.txt", "one.jpg", "two.png"]
    globbed = [p.name for p in iter_inputs([str(tmp_path / "a/**/*.png")])]
    assert globbed == ["two.png"]
    listed = [p.name for p in iter_inputs([str(tmp_path / "a/one.jpg")], list_file=str(listing))]
    assert listed == ["one.jpg", "gone.jpg"]  # repeats once; missing names are kept to be reported


def test_pipeline_accounts_for_every_file(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    expected = make_bad_folder(tmp_path / "bad", photos[0])
    paths = sorted((tmp_path / "bad").iterdir()) + [tmp_path / "bad" / "missing.jpg"]
    expected["missing.jpg"] = "not_found"
    results = list(iter_embeddings(embedder, paths, batch_size=3, workers=2))
    assert sorted(r.path for r in results) == sorted(map(str, paths))
    for result in results:
        status = "ok" if result.ok else result.error.kind  # type: ignore[union-attr]
        assert status == expected[Path(result.path).name], (result.path, result.error)
        if not result.ok:
            assert Path(result.path).name in str(result.error)
    good = [r for r in results if r.ok]
    reference = embedder.embed([r.path for r in good])
    assert np.allclose(np.stack([r.vector for r in good]), reference, rtol=1e-4, atol=1e-3)


def test_a_stuck_decode_is_reported_and_the_run_finishes(embedder: Embedder, photos: list[Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.ingest import pipeline

    real = pipeline.read_file

    def slow_for_one(path: Path, *args: object) -> object:
        if path == photos[1]:
            time.sleep(30)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "read_file", slow_for_one)
    started = time.monotonic()
    results = list(iter_embeddings(embedder, photos[:3], batch_size=2, workers=2, decode_timeout=1.0))
    assert time.monotonic() - started < 20
    kinds = {Path(r.path).name: (r.error.kind if r.error else "ok") for r in results}
    assert kinds == {photos[0].name: "ok", photos[1].name: "timeout", photos[2].name: "ok"}


def test_embed_cli_records_every_bad_file(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    expected = make_bad_folder(tmp_path / "bad", photos[0])
    store = tmp_path / "store"
    result = run_cli("embed", str(tmp_path / "bad"), "--all-files", "--store", str(store),
                     "--model", str(model_dir), "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["seen"] == len(expected) - 1  # the directory named like an image is walked into
    assert summary["embedded"] + summary["failed"] == summary["seen"]
    table = Store.open(store).table()
    statuses = dict(zip([Path(p).name for p in table.column("path").to_pylist()],
                        [k or s for s, k in zip(table.column("status").to_pylist(), table.column("error_kind").to_pylist())]))
    assert statuses == {name: status for name, status in expected.items() if name != "dir.jpg"}
    # named on the command line, a folder is walked (this one is empty), never decoded
    named = run_cli("embed", str(tmp_path / "bad" / "dir.jpg"), "--store", str(store), "--model", str(model_dir), "--json")
    assert json.loads(named.stdout)["seen"] == 0 and named.returncode == 0


def _folder_of(photos: list[Path], root: Path, copies: int) -> list[Path]:
    root.mkdir()
    made = []
    for n in range(copies):
        target = root / f"{n:03d}{photos[n % len(photos)].suffix}"
        shutil.copy(photos[n % len(photos)], target)
        made.append(target)
    return made


def test_kill_9_then_rerun_loses_and_duplicates_nothing(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    files = _folder_of(photos, tmp_path / "many", 40)
    store = tmp_path / "store"
    args = [sys.executable, "-m", "vggsim", "embed", str(tmp_path / "many"), "--store", str(store),
            "--model", str(model_dir), "--batch-size", "2", "--workers", "1", "--quiet", "--threads", "1"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        journals = list((store / "journal").glob("*.jsonl")) if (store / "journal").exists() else []
        if journals and journals[0].read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = Store.open(store)
    rerun = run_cli("embed", str(tmp_path / "many"), "--store", str(store), "--model", str(model_dir), "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    table = Store.open(store).table()
    paths = table.column("path").to_pylist()
    assert sorted(paths) == sorted(map(str, files)) and len(set(paths)) == len(paths)
    assert summary["unchanged"] >= 6 and summary["embedded"] > 0  # the kill landed mid-run
    assert summary["embedded"] == len(files) - summary["unchanged"]
    assert Store.open(store).history().num_rows == len(files)
    vectors = np.concatenate([b.vectors for b in Store.open(store).blocks()])
    assert vectors.shape == (len(files), 512) and np.all(np.isfinite(vectors))
    del partial


def test_torn_journal_keeps_complete_records(tmp_path: Path) -> None:
    """A writer killed mid-record: the next writer keeps its complete records, drops the torn one."""
    identity = StoreIdentity("m" * 64, {"size": [224, 224]}, 512)
    script = (
        "import os, sys, numpy as np\n"
        "from vggsim.store import Record, StoreIdentity, StoreWriter\n"
        "writer = StoreWriter.open(sys.argv[1], StoreIdentity('m' * 64, {'size': [224, 224]}, 512))\n"
        "for n in range(3):\n"
        "    writer.add(Record(f'/x/{n}.jpg', 'ok'), np.full(512, n, np.float32))\n"
        "writer.flush()\n"
        "os._exit(0)  # die without committing, as a kill -9 would\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], check=True, timeout=120)
    journal = next((tmp_path / "s" / "journal").glob("*.jsonl"))
    with open(journal.with_suffix(".vec"), "ab") as fp:
        fp.write(b"\0" * 100)  # a vector cut short by the kill
    with open(journal, "ab") as fp:
        fp.write(b'0badc0de {"p": "L3gvMy5qcGc=", "sta')  # and its torn metadata line
    StoreWriter.open(tmp_path / "s", identity).close()
    store = Store.open(tmp_path / "s")
    assert store.paths() == ["/x/0.jpg", "/x/1.jpg", "/x/2.jpg"]
    assert [float(v[0]) for v in store.vectors([0, 1, 2])] == [0.0, 1.0, 2.0]


def test_incremental_prune_and_store_identity(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    folder = tmp_path / "photos"
    files = _folder_of(photos, folder, 3)
    store = tmp_path / "store"
    base = ["--store", str(store), "--model", str(model_dir), "--json"]
    assert json.loads(run_cli("embed", str(folder), *base).stdout)["embedded"] == 3
    shutil.copy(photos[3], folder / "new.png")
    shutil.copy(photos[4], files[0])  # changed content, new size and mtime
    second = json.loads(run_cli("embed", str(folder), *base).stdout)
    assert (second["embedded"], second["unchanged"]) == (2, 2)
    files[1].unlink()
    third = json.loads(run_cli("embed", str(folder), "--prune", *base).stdout)
    assert third["pruned"] == 1
    table = Store.open(store).table()
    assert sorted(Path(p).name for p in table.column("path").to_pylist()) == sorted([files[0].name, files[2].name, "new.png"])
    import pyarrow.parquet as pq

    assert pq.read_table(store / "meta").num_rows == 3 + 2 + 1  # the full history, readable as one dataset
    other = StoreIdentity.from_dict(dict(Embedder(model_dir).manifest.identity(), model_sha256="0" * 64, dim=512))
    with pytest.raises(StoreError, match="different model sha256"):
        StoreWriter.open(store, other)


def test_float16_store(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    result = run_cli("embed", *map(str, photos[:2]), "--store", str(tmp_path / "s"), "--model", str(model_dir),
                     "--float16", "--quiet")
    assert result.returncode == 0, result.stderr
    shard = np.load(next((tmp_path / "s" / "vectors").glob("*.npy")), allow_pickle=False)
    assert shard.dtype == np.float16 and shard.shape == (2, 512)


def test_paths_from_stdin(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    listing = f"{photos[0]}\n# skipped comment\n{tmp_path / 'absent.jpg'}\n"
    result = run_cli("embed", "--from", "-", "--store", str(tmp_path / "s"), "--model", str(model_dir), "--json",
                     input=listing)
    summary = json.loads(result.stdout)
    assert (summary["embedded"], summary["failed"], summary["failed_by_kind"]) == (1, 1, {"not_found": 1})
    assert result.returncode == 1
