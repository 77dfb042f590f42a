"""The near-duplicate calibration lives in export/ and hands the manifest a typed block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vggsim import Embedder
from vggsim.export.calibrate import NEAR_DUPLICATE_EDITS, calibrate_threshold
from vggsim.model.manifest import DedupCalibration


def test_calibration_measures_edits_against_distinct_photos(embedder: Embedder, photos: list[Path]) -> None:
    result = calibrate_threshold(lambda ims: embedder.embed([im for im in ims]), photos[:4])
    assert isinstance(result, DedupCalibration) and result.photos == 4
    assert set(result.near_duplicate_min_by_edit) == set(NEAR_DUPLICATE_EDITS)
    low, high = sorted((result.near_duplicate_min, result.distinct_max))
    assert low <= result.threshold <= high
    assert result.separable == (result.near_duplicate_min > result.distinct_max)
    assert DedupCalibration.from_dict(result.to_dict()) == result


@pytest.mark.full_env  # TensorFlow, keras and onnx must be installed for this to mean anything
def test_calibration_and_keras_bench_left_the_runtime() -> None:
    import vggsim.tools.bench
    import vggsim.search.pairs

    assert not hasattr(vggsim.search.pairs, "calibrate_threshold") and not hasattr(vggsim.search.pairs, "NEAR_DUPLICATE_EDITS")
    assert not hasattr(vggsim.tools.bench, "keras_figures")
    code = ("import sys, vggsim.tools.bench, vggsim.export.calibrate, vggsim.export.keras_bench; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf2onnx'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"
