"""Plain mistakes with the library's arguments (fault-injection report of issue 7, F-api-*,
F-names-1): a clear ArgumentError or a recorded failure, never a hang, a walk of "/" or a raw
AttributeError/TypeError from deep inside."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vggsim import Embedder, ImageError, iter_embeddings
from vggsim.collection import (ArgumentError, StoreReader, embed_into_store, find_duplicates, search_images,
                               search_store)
from vggsim.images.preprocess import load_image
from vggsim.store import Store

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def small_store(embedder: Embedder, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("args")
    for photo in photos[:3]:
        shutil.copy(photo, root / photo.name)
    summary = embed_into_store(embedder, [root], root / "store", workers=1)
    assert summary.embedded == 3
    return root / "store"


# ---- F-api-1: one path where a list is expected -------------------------------------------

@pytest.mark.parametrize("single", ["photos/a.jpg", b"photos/a.jpg", Path("photos/a.jpg")])
def test_embed_into_store_refuses_one_path_instead_of_walking_the_root(embedder: Embedder, tmp_path: Path,
                                                                       single: object) -> None:
    with pytest.raises(ArgumentError, match="inputs is a list of paths; got a .*wrap it in a list"):
        embed_into_store(embedder, single, tmp_path / "s.vgg")  # type: ignore[arg-type]
    assert not (tmp_path / "s.vgg").exists()  # refused before the store is touched


def test_iter_embeddings_and_search_images_refuse_one_path(embedder: Embedder, small_store: Path) -> None:
    with pytest.raises(ArgumentError, match="items is a list of paths"):
        iter_embeddings(embedder, "photos/a.jpg")  # raised at once, not at the first next()
    with pytest.raises(ArgumentError, match="images is a list of images"):
        search_images(embedder, Store.open(small_store), "photos/a.jpg")


# ---- F-names-1: a name that cannot be stat'ed is one failed file ----------------------------

def test_over_long_path_is_a_failed_file_and_the_run_goes_on(embedder: Embedder, photos: list[Path],
                                                             tmp_path: Path) -> None:
    long_name = str(tmp_path / ("y" * 300))
    summary = embed_into_store(embedder, [photos[0], long_name, "z" * 100_000], tmp_path / "s.vgg", workers=1)
    assert summary.embedded == 1 and summary.failed == 2
    assert {f.kind for f in summary.failures} <= {"unreadable", "not_found"}
    assert sorted(Store.open(tmp_path / "s.vgg").paths(), key=len)[-1] == os.path.abspath("z" * 100_000)


def test_over_long_list_line_is_shortened_in_messages(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos[0]}\n{'x' * 1_000_000}\n")
    result = subprocess.run([sys.executable, "-m", "vggsim", "embed", "--from", str(listing), "--store",
                             str(tmp_path / "s.vgg"), "--model", str(model_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "1 embedded" in result.stderr and "1 failed" in result.stderr
    assert len(result.stderr) < 5000 and "\u2026" in result.stderr
    from vggsim.errors import short_name

    assert len(short_name("x" * 1_000_000)) < 250 and short_name("short") == "short"


# ---- F-api-2: the obvious first calls --------------------------------------------------------

def test_store_path_is_accepted_where_a_store_is_expected(embedder: Embedder, small_store: Path,
                                                          photos: list[Path]) -> None:
    query = embedder.embed([photos[0]])
    assert search_store(str(small_store), query, k=1)[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert search_images(embedder, small_store, [photos[0]], k=1)[0][0].path.endswith(photos[0].name)
    assert find_duplicates(os.fsencode(small_store), 0.999) == []
    with pytest.raises(ArgumentError, match="store must be a Store, a StoreReader or a store folder path"):
        search_store(42, query)  # type: ignore[arg-type]


def test_non_path_items_are_failed_inputs_and_bytes_paths_work(embedder: Embedder, photos: list[Path],
                                                               tmp_path: Path) -> None:
    odd = os.fsencode(tmp_path) + b"/caf\xe9.jpg"  # not valid UTF-8: bytes keep it exact
    shutil.copy(photos[0], odd)
    summary = embed_into_store(embedder, [5, None, odd], tmp_path / "s.vgg", workers=1)  # type: ignore[list-item]
    assert summary.embedded == 1 and summary.failed == 2 and summary.seen == 3
    assert [f.kind for f in summary.failures] == ["bad_input", "bad_input"]
    assert Store.open(tmp_path / "s.vgg").records()[0].path == os.fsdecode(odd)


def test_store_reader_refuses_what_is_not_a_path_or_a_vector(small_store: Path) -> None:
    with pytest.raises(ArgumentError, match="StoreReader takes a store folder path, got NoneType"):
        StoreReader(None)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="use search_images"):
        StoreReader(small_store).search("photos/china.jpg", k=2)
    with pytest.raises(ArgumentError, match="array of numbers"):
        StoreReader(small_store).search([["a", "b"]], k=2)


# ---- F-api-3: arrays ---------------------------------------------------------------------

def test_run_on_one_image_says_it_needs_the_batch_axis(embedder: Embedder) -> None:
    with pytest.raises(ImageError, match=r"run needs a batch of shape \(N, 224, 224, 3\), got \(224, 224, 3\) "
                                         r"\(one image: pass image\[None\]"):
        embedder.run(np.zeros((224, 224, 3), np.float32))


def test_similarity_and_search_images_accept_preprocessed_arrays(embedder: Embedder, photos: list[Path],
                                                                 small_store: Path) -> None:
    array = load_image(photos[0])
    assert embedder.similarity(array, photos[0]) == pytest.approx(1.0, abs=1e-5)
    by_array = search_images(embedder, StoreReader(small_store), [array], k=1)
    assert by_array[0][0].path.endswith(photos[0].name)
    assert search_images(embedder, small_store, array[None], k=1)[0][0].id == by_array[0][0].id
    with pytest.raises(ImageError, match=r"must have shape \(224, 224, 3\)"):
        embedder.similarity(np.zeros((10, 10, 3), np.float32), array)
