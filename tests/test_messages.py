"""Messages found wanting by fault injection: install hints that work, empty stores said so,
options that cannot apply said so, decoder noise tied to its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vggsim import errors


def test_missing_extra_hint_names_the_checkout_vggsim_was_installed_from(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    checkout = tmp_path / "my checkout"
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    error = errors.MissingExtraError("store", "vggsim search", "pyarrow")
    assert error.pip_command == f"pip install -e '{checkout}[store]'"
    assert error.pip_command in str(error) and "\n" not in str(error)
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": checkout.as_uri(), "dir_info": {}})
    assert errors.MissingExtraError("store", "x", "pyarrow").pip_command == f"pip install '{checkout}[store]'"


def test_missing_extra_hint_falls_back_to_the_index_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_direct_url", lambda: None)
    assert errors.MissingExtraError("store", "x", "pyarrow").pip_command == "pip install 'vggsim[store]'"
    monkeypatch.setattr(errors, "_direct_url", lambda: {"url": "https://example.org/vggsim.tar.gz"})
    assert errors.MissingExtraError("gpu", "x", "y").pip_command == "pip install 'vggsim[gpu]'"


def test_direct_url_is_read_from_the_installed_distribution() -> None:
    data = errors._direct_url()  # this test run's vggsim: installed from the checkout by mkvenv/quickstart
    assert data is None or isinstance(data, dict)
    if data is not None:
        json.dumps(data)
