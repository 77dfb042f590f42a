"""What `vggsim export` keeps of TensorFlow's C++ start-up lines (the import itself needs the export extra)."""

from __future__ import annotations

from vggsim.export.tf_logs import kept_lines

# Captured from `import tensorflow` (2.21) with TF_CPP_MIN_LOG_LEVEL=2, which does not hold these back.
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = ("I0000 00:00:1796486602.414654   10767 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results due to floating-point round-off errors from different "
          "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.")
STARTUP = f"{PREAMBLE}\n{ONEDNN}\n{PREAMBLE}\n{ONEDNN}\n"


def test_tensorflow_startup_info_lines_are_dropped_and_warnings_and_errors_kept() -> None:
    assert kept_lines(STARTUP) == []
    worse = "E0000 00:00:1796486605.934429   10767 cuda_dnn.cc:8310] Unable to register cuDNN factory"
    plain = "Traceback-free text that is not absl's"
    assert kept_lines(STARTUP + worse + "\n" + plain + "\n") == [worse, plain]
