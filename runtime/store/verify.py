"""Checking every committed byte of a store's shards: files, sizes, sha256, headers, rows, meta."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vggsim.errors import StoreError
from vggsim.store.format import CommitRecord, Shard, check_shard_cheaply, sha256_file
from vggsim.store.layout import read_meta


@dataclass
class VerifyReport:
    """``ok`` when every committed shard checks out; ``problems`` name the damaged files."""

    ok: bool
    shards: int
    rows: int
    problems: list[str] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)  # ids of the damaged shards


def shard_problems(root: Path, shard: Shard, dim: int) -> list[str]:
    problems = []
    for name, entry in shard.files.items():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, the commit record says {entry['size']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from the commit record (the file was damaged or replaced)")
    if problems:
        return problems
    try:
        check_shard_cheaply(root, shard, dim)
        read_meta(root, shard)
    except StoreError as exc:
        problems.append(str(exc).split("; run `vggsim")[0])
    return problems


def verify_shards(root: Path, dim: int, commit: CommitRecord) -> VerifyReport:
    """Check every shard of ``commit`` in full: files, sizes, sha256, header, rows, meta."""
    report = VerifyReport(True, len(commit.shards), 0)
    for shard in commit.shards:
        problems = shard_problems(root, shard, dim)
        if problems:
            report.problems += problems
            report.damaged.append(shard.id)
        else:
            report.rows += shard.rows
    report.ok = not report.problems
    return report
