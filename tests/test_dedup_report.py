"""What `vggsim dedup` and `vggsim compare` show: group order, the plot's tiles and title."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggsim.collection import find_duplicates
from vggsim.collection.results import DuplicateGroup, DuplicateMember

from support import make_store

pytest.importorskip("pyarrow")
pytest.importorskip("PIL")

DIM = 16


def copies(base: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [base + 1e-4 * rng.standard_normal(DIM) for _ in range(n)]


def test_duplicate_groups_are_numbered_largest_first_then_by_first_member(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    basis = np.eye(DIM, dtype=np.float32)
    # ids 0-1: a pair; 2-4: three; 5-6: another pair; 7: alone
    vectors = np.stack([*copies(basis[0], 2, rng), *copies(basis[1], 3, rng), *copies(basis[2], 2, rng),
                        basis[3]]).astype(np.float32)
    groups = find_duplicates(make_store(tmp_path / "store", vectors), 0.99)
    assert [(g.number, [m.id for m in g.members]) for g in groups] == [(1, [2, 3, 4]), (2, [0, 1]), (3, [5, 6])]


def group(number: int, first_id: int, size: int) -> DuplicateGroup:
    return DuplicateGroup(number, [DuplicateMember(f"/p/{first_id + i}.jpg", 1.0, first_id + i) for i in range(size)])


def test_dedup_plot_tiles_go_largest_first_and_say_how_many_are_not_drawn() -> None:
    from vggsim.tools.plot import duplicate_rows

    rows = duplicate_rows([group(1, 0, 3), group(2, 10, 16), group(3, 40, 2), group(4, 50, 3)])
    firsts = [row[0][1].split()[1] for row in rows]
    assert firsts == ["2", "1", "4", "3"]  # by size, then first member, whatever the numbers given
    big = rows[0]
    assert len(big) == 7 and big[-1] == (None, "group 2: +10 more")
    assert all(source is not None for source, _ in big[:6])
    assert [len(row) for row in rows[1:]] == [3, 3, 2]  # no note when every member is drawn


def test_compare_plot_title_is_wrapped_to_the_sheet_width(tmp_path: Path, photos: list[Path]) -> None:
    from PIL import Image

    from vggsim.cli.common import plot_title
    from PIL import ImageFont

    from vggsim.tools.plot import contact_sheet, sheet_width, title_lines

    title = plot_title("cosine similarity 0.1234  (CPUExecutionProvider)", True)
    lines = title_lines(title, sheet_width(2))
    font = ImageFont.load_default(size=14)
    assert " ".join(lines) == " ".join(title.split()) and len(lines) > 1
    assert all(font.getlength(line) <= sheet_width(2) - 20 for line in lines)
    out = tmp_path / "compare.png"
    contact_sheet([[(photos[0], "a"), (photos[1], "b")]], out, title=title)
    untitled = tmp_path / "untitled.png"
    contact_sheet([[(photos[0], "a"), (photos[1], "b")]], untitled)
    assert Image.open(out).height - Image.open(untitled).height >= 20 * len(lines)  # room for every line


def test_dedup_says_groups_link_through_chains_below_the_threshold(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vggsim.cli import main

    angles = np.radians([0.0, 20.0, 40.0, 90.0])  # 0-20 and 20-40 are pairs at cos 0.94; 0-40 is only 0.77
    vectors = np.zeros((4, DIM), np.float32)
    vectors[:, 0], vectors[:, 1] = np.cos(angles), np.sin(angles)
    root = tmp_path / "store"
    make_store(root, vectors)
    assert main(["dedup", "--store", str(root), "--threshold", "0.9", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [row["path"][-7:] for row in report["groups"]] == ["000.jpg", "001.jpg", "002.jpg"]
    assert report["chained"] == 1 and "chain of pairs" in report["linkage"]
    assert "1 image scored below the threshold" in captured.err and "chain of pairs" in captured.err
