"""Names in output: JSON that any parser reads losslessly, text output one name per line."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vggsim.cli.common import display_path, json_safe


def test_json_output_of_non_utf8_names_is_lossless_without_surrogates() -> None:
    name = os.fsdecode(b"/x/bad\xff\xfe.jpg")
    data = json_safe({"query": name, "matches": [{"path": name, "score": 1.0}], "plain": "/x/ok.jpg"})
    text = json.dumps(data, ensure_ascii=False)
    text.encode("utf-8")  # strict: no lone surrogates left for jq to turn into U+FFFD
    match = data["matches"][0]
    assert match["path"] == "/x/bad\\xff\\xfe.jpg"  # the store's display text
    assert base64.b64decode(match["path_bytes_b64"]) == b"/x/bad\xff\xfe.jpg"
    assert data["query_bytes_b64"] and data["plain"] == "/x/ok.jpg" and "plain_bytes_b64" not in data


def test_text_output_escapes_control_characters_in_names() -> None:
    assert display_path("/x/new\nline\t\x1b.jpg") == "/x/new\\nline\\t\\x1b.jpg"
    assert display_path(os.fsdecode(b"/x/bad\xff.jpg")) == "/x/bad\\xff.jpg"
    assert display_path("/x/caf\u00e9.jpg") == "/x/caf\u00e9.jpg"


def test_one_rule_shows_a_name_in_the_cli_in_errors_and_in_the_service() -> None:
    """The CLI's text output, an ImageError's message and the service's JSON error show a name alike:
    bytes that are not UTF-8 as \\xNN, control and bidi characters escaped, one line."""
    pytest.importorskip("fastapi")
    from vggsim.errors import ImageError, shown_name
    from vggsim.serve.problems import error_response

    name = os.fsdecode(b"/x/a\nb\x1b\xff") + "\u202e.jpg"
    shown = "/x/a\\nb\\x1b\\xff\\u202e.jpg"
    assert shown_name(name) == display_path(name) == shown
    error = ImageError(name, "not_an_image", "not an image")
    assert str(error) == f"{shown}: not an image" and error.source == name  # the exact name stays on the error
    body = json.loads(bytes(error_response(422, "not_an_image", str(error)).body))
    assert body["error"]["message"] == str(error)


def test_search_output_round_trips_non_utf8_and_newline_names(tmp_path: Path, model_dir: Path,
                                                              photos: list[Path]) -> None:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "names"
    folder.mkdir()
    bad = os.fsdecode(bytes(folder) + b"/bad\xff\xfe.jpg")
    newline = str(folder / "new\nline.jpg")
    shutil.copy(photos[0], bad)
    shutil.copy(photos[0], newline)
    store = str(tmp_path / "n.vgg")

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "vggsim", *args, "--model", str(model_dir)],
                              capture_output=True, timeout=600)

    assert cli("embed", str(folder), "--store", store, "--quiet").returncode == 0
    found = cli("search", bad, "--store", store, "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout.decode("utf-8"))  # strict UTF-8
    names = {base64.b64decode(m["path_bytes_b64"]) if "path_bytes_b64" in m else m["path"].encode()
             for m in data["results"][0]["matches"]}
    assert names == {os.fsencode(bad), os.fsencode(newline)}
    text = cli("search", bad, "--store", store, "-k", "2").stdout.decode("utf-8").splitlines()
    assert any(line.endswith("/new\\nline.jpg") for line in text[1:]), text
    assert len(text) == 3, text  # the query line and two matches: no name split over lines
