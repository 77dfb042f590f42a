"""`vggsim bench`: what its report says about the model (the timing figures are tested in test_variants)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import vggsim.tools.bench as bench
from vggsim.cli import main
from vggsim.errors import RandomWeightsWarning


@pytest.fixture
def quick_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matmul peak and the cold starts (fresh interpreters) are the slow parts, and beside the point here."""
    monkeypatch.setattr(bench, "matmul_peak", lambda providers="cpu": {"gflops": 1.0, "by_size": {}, "providers": providers})
    monkeypatch.setattr(bench, "cold_start", lambda *args, **kwargs: {"seconds": 0.1})


def test_bench_json_says_random_weights_and_warns_once(quick_bench: None, model_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    with warnings.catch_warnings():  # conftest silences the warning for the whole run: here it is the subject
        warnings.simplefilter("default", RandomWeightsWarning)
        assert main(["bench", "--model", str(model_dir), "--rounds", "1", "--batch-sizes", "1", "--threads", "1,2",
                     "--providers", "cpu", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert json.loads(captured.out) == report
    assert report["random_weights"] is True and "not meaningful" in report["note"]
    assert report["models"][0]["random_weights"] is True
    assert captured.err.count("random weights") == 1, captured.err
