"""The duplicate workflow: three tiers (byte, pixel, near), decisions kept in the store, a keeper with its
reason, groups page by page; through the library and `vggsim dedup`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vggsim.store import Record, Store

pytest.importorskip("pyarrow")

from vggsim.collection import find_duplicates, page_of  # noqa: E402
from vggsim.collection.decisions import FILE, load, record  # noqa: E402
from vggsim.collection.keeper import suggest_keeper  # noqa: E402
from support import image_bytes, run_cli  # noqa: E402


def png_variant(data: bytes, **save: object) -> bytes:
    """The same pixels saved again (another compression level, added text or EXIF): other bytes."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "PNG", **save)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.png; b.png: a's pixels saved again with text metadata; c.png: a byte copy of a; d.png: a near
    duplicate (a resized down and up); e.png and f.png: unrelated."""
    folder = tmp_path_factory.mktemp("workflow")
    original = image_bytes(7, size=(160, 120))
    (folder / "a.png").write_bytes(original)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "edited metadata only")
    (folder / "b.png").write_bytes(png_variant(original, compress_level=1, pnginfo=info))
    shutil.copy(folder / "a.png", folder / "c.png")
    near = Image.open(io.BytesIO(original)).resize((80, 60)).resize((160, 120))
    near.save(folder / "d.png")
    (folder / "e.png").write_bytes(image_bytes(8, size=(160, 120)))
    (folder / "f.png").write_bytes(image_bytes(9, size=(160, 120)))
    return folder


@pytest.fixture
def store(photos: Path, model_dir: Path, tmp_path: Path) -> Store:
    result = run_cli("embed", str(photos), "--store", str(tmp_path / "s"), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    return Store.open(tmp_path / "s")


def by_name(store: Store) -> dict[str, Record]:
    return {Path(r.path).name: r for r in store.records()}


def test_the_store_records_a_pixel_hash_equal_for_a_metadata_only_edit(store: Store) -> None:
    records = by_name(store)
    assert records["a.png"].sha256 != records["b.png"].sha256
    assert records["a.png"].pixel_sha256 == records["b.png"].pixel_sha256 is not None
    assert records["a.png"].pixel_sha256 != records["d.png"].pixel_sha256


def expected_keeper(photos: Path, names: list[str]) -> str:
    """Same resolution and format: the largest file, then the first by path (the rule, from the files themselves)."""
    return min(names, key=lambda n: (-(photos / n).stat().st_size, str(photos / n)))


def test_groups_name_each_members_tier_against_the_keeper(store: Store, photos: Path) -> None:
    # threshold 1: only what is identical in bytes or in pixels groups (cosine alone can round below 1)
    groups = find_duplicates(store, 1.0)
    assert len(groups) == 1
    tiers = {Path(m.path).name: m.tier for m in groups[0].members}
    keeper = expected_keeper(photos, ["a.png", "b.png", "c.png"])
    same_bytes = {n: (photos / n).read_bytes() == (photos / keeper).read_bytes() for n in ("a.png", "b.png", "c.png")}
    assert tiers == {n: "keeper" if n == keeper else "byte" if same_bytes[n] else "pixel" for n in same_bytes}
    assert groups[0].tier == "pixel" and all(m.score == 1.0 for m in groups[0].members)
    assert groups[0].keeper_reason.startswith("the largest file" if keeper == "b.png" else "all alike") or \
        "first by path" in groups[0].keeper_reason


def test_not_duplicates_and_keep_are_kept_in_the_store_and_honoured(store: Store) -> None:
    paths = {Path(r.path).name: r.path for r in store.records()}
    record(store, "not_duplicates", [paths["a.png"], paths["b.png"]])
    groups = find_duplicates(store, 1.0)
    # a-b no longer links; b has no other link, so it leaves the group; a and its byte copy stay together
    assert [sorted(Path(m.path).name for m in g.members) for g in groups] == [["a.png", "c.png"]]
    record(store, "keep", [paths["c.png"]])
    groups = find_duplicates(store, 1.0)
    assert Path(next(m.path for m in groups[0].members if m.id == groups[0].keeper)).name == "c.png"
    assert groups[0].keeper_chosen and groups[0].keeper_reason == "you chose to keep it"
    record(store, "forget", [paths["a.png"], paths["b.png"], paths["c.png"]])
    assert sorted(Path(m.path).name for m in find_duplicates(store, 1.0)[0].members) == ["a.png", "b.png", "c.png"]


def test_a_torn_or_edited_decision_line_is_skipped_not_guessed(store: Store) -> None:
    records = by_name(store)
    paths = [records["a.png"].path, records["e.png"].path]  # two files with different contents
    record(store, "not_duplicates", paths)
    with open(store.root / FILE, "ab") as fp:
        fp.write(b'0000abcd {"decision": "keep", "files": ["x"]}\n{"decision": "keep"')  # bad crc, then cut
    decided = load(store.root)
    assert decided.skipped_lines == 2 and len(decided.not_duplicates) == 1 and not decided.keep
    # the next decision after a cut line still counts: it starts on a line of its own
    assert record(store, "keep", [paths[0]]).keep == {(paths[0], records["a.png"].sha256)}


def test_a_decisions_file_that_is_not_a_regular_file_is_refused_not_waited_on(store: Store) -> None:
    import os
    import signal

    from vggsim import StoreError

    def hung(*_: object) -> None:
        raise TimeoutError("reading the decisions blocked")

    os.mkfifo(store.root / FILE)  # reading a FIFO with no writer would block for ever
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)  # bounded: a hang fails the test instead of the run
    try:
        with pytest.raises(StoreError, match="not a regular file"):
            load(store.root)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_decision_naming_files_many_times_costs_once(store: Store) -> None:
    records = by_name(store)
    paths = [records["a.png"].path, records["e.png"].path]
    decided = record(store, "not_duplicates", paths * 3000)
    assert len(decided.not_duplicates) == 1
    with pytest.raises(ValueError, match="at most 100 files"):
        record(store, "not_duplicates", [f"/p/{n}.png" for n in range(101)])


def test_a_decision_about_a_file_not_in_the_store_is_refused(store: Store) -> None:
    from vggsim import StoreError

    with pytest.raises(StoreError, match="not a file with a vector in the store"):
        record(store, "keep", ["/nowhere/x.png"])
    with pytest.raises(ValueError, match="at least two files"):
        record(store, "not_duplicates", [store.records()[0].path])


def test_the_keeper_rule_says_why() -> None:
    big = Record("/p/z-big.jpg", "ok", 900_000, 2_000, "s1", 4000, 3000)
    small = Record("/p/a-small.jpg", "ok", 2_000_000, 1_000, "s2", 2000, 1500)
    assert suggest_keeper([small, big]).index == 1
    assert suggest_keeper([small, big]).reason.startswith("the highest resolution (4000x3000; others: 2000x1500)")
    png = Record("/p/b.png", "ok", 100, 5, "s3", 4000, 3000)
    assert suggest_keeper([big, png]).index == 1 and "lossless" in suggest_keeper([big, png]).reason
    larger = Record("/p/c.jpg", "ok", 950_000, 9_000, "s4", 4000, 3000)
    assert suggest_keeper([big, larger]).index == 1 and "the largest file" in suggest_keeper([big, larger]).reason
    older = Record("/p/d.jpg", "ok", 950_000, 1, "s5", 4000, 3000)
    assert suggest_keeper([larger, older]).index == 1 and "the oldest file" in suggest_keeper([larger, older]).reason
    twin = Record("/p/a.jpg", "ok", 950_000, 1, "s6", 4000, 3000)
    assert suggest_keeper([older, twin]).index == 1 and "first by path" in suggest_keeper([older, twin]).reason
    assert suggest_keeper([older, twin], [True, False]).index == 0


def test_groups_come_page_by_page() -> None:
    from vggsim.collection.results import DuplicateGroup

    groups = [DuplicateGroup(n, []) for n in range(1, 251)]
    page = page_of(groups, 3, 100)
    assert [g.number for g in page.groups] == list(range(201, 251)) and page.pages == 3 and page.total_groups == 250
    assert page_of(groups, 4, 100).groups == []
    with pytest.raises(ValueError):
        page_of(groups, 0, 100)


def test_the_cli_records_decisions_and_pages(store: Store) -> None:
    paths = {Path(r.path).name: r.path for r in store.records()}
    shown = run_cli("dedup", "--store", str(store.root), "--threshold", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["groups"]
    assert sorted(Path(r["path"]).name for r in rows) == ["a.png", "b.png", "c.png"]
    assert {r["tier"] for r in rows} <= {"keeper", "byte", "pixel"} and "pixel" in {r["tier"] for r in rows}
    assert [r["keeper_reason"] != "" for r in rows].count(True) == 1
    decided = run_cli("dedup", "--store", str(store.root), "--threshold", "1", "--json",
                      "--not-duplicates", paths["a.png"], paths["b.png"])
    assert decided.returncode == 0, decided.stderr
    assert "b.png" not in {Path(r["path"]).name for r in json.loads(decided.stdout)["groups"]}
    paged = run_cli("dedup", "--store", str(store.root), "--threshold", "0.5", "--json", "--page", "2",
                    "--page-size", "1")
    body = json.loads(paged.stdout)
    assert paged.returncode == 0 and body["page"] == 2 and all(r["group"] == 2 for r in body["groups"])
    assert body["total_groups"] >= 1
    missing = run_cli("dedup", "--store", str(store.root), "--threshold", "1", "--keep", "/nowhere.png")
    assert missing.returncode == 1 and "not a file with a vector" in missing.stderr
    same = run_cli("dedup", "--store", str(store.root), "--threshold", "1", "--not-duplicates", paths["a.png"],
                   paths["c.png"])  # byte copies: always duplicates, refused in one line as a usage error
    assert same.returncode == 2 and "different contents" in same.stderr and "internal error" not in same.stderr
    assert len(same.stderr.strip().splitlines()) == 1
