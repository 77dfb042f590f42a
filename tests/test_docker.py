"""docker/Dockerfile and Dockerfile.cuda, read as text: no container engine is needed to check them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from vggsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in text.splitlines() if line.strip())]


def last(path: Path, name: str) -> str:
    found = [args for instruction, args in instructions(path) if instruction == name]
    assert found, f"{path.name} has no {name}"
    return found[-1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_a_user_other_than_root(path: Path) -> None:
    assert last(path, "USER") not in ("root", "0", "0:0")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_cmd_parses_with_the_real_cli_and_reads_the_model_volume(path: Path) -> None:
    command = json.loads(last(path, "CMD"))
    assert command[:2] == ["vggsim", "serve"]
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0" and args.model.startswith("/models/")
    assert "/models" in json.loads(last(path, "VOLUME"))
    assert str(args.port) in last(path, "EXPOSE").split()


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_healthcheck_asks_a_health_route_the_app_serves(path: Path, embedder: Any, model_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from vggsim.serve.app import create_app
    from vggsim.serve.config import ServeConfig

    check = last(path, "HEALTHCHECK")
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", check)
    assert match and "CMD" in check, check
    command = build_parser().parse_args(json.loads(last(path, "CMD"))[1:])
    assert int(match.group(1)) == command.port
    app = create_app(ServeConfig(model=str(model_dir), providers="cpu"), embedder)
    methods = {m for route in app.routes if getattr(route, "path", None) == match.group(2)
               for m in getattr(route, "methods", set())}
    assert "GET" in methods, f"{match.group(2)} is not a GET route of the app"
