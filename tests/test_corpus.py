"""Pillow's own 962 odd and broken test images go through `vggsim embed`: all accounted for.

Runs where ../shared/corpus/pillow-test-images exists (or $VGGSIM_CORPUS names a folder).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import CORPUS


@pytest.mark.slow
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no Pillow corpus at {CORPUS} (../shared is absent; set VGGSIM_CORPUS)")
def test_pillow_corpus_every_file_embedded_or_reported(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    files = sorted(str(p.absolute()) for p in CORPUS.rglob("*") if p.is_file() and not p.name.startswith("."))
    result = subprocess.run([sys.executable, "-m", "vggsim", "embed", str(CORPUS), "--all-files", "--store",
                             str(tmp_path / "store"), "--model", str(model_dir), "--json", "--decode-timeout", "30"],
                            capture_output=True, text=True, timeout=1500)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["seen"] == len(files)
    assert summary["embedded"] + summary["failed"] == len(files)
    assert "internal" not in summary["failed_by_kind"], summary["failed_by_kind"]
    from vggsim.store import Store

    recorded = Store.open(tmp_path / "store").table().column("path").to_pylist()
    assert sorted(recorded) == files
    print(f"\npillow corpus: {len(files)} files, {summary['embedded']} embedded, {summary['failed']} reported "
          f"{summary['failed_by_kind']} in {summary['seconds']} s")
