"""Generate docs/reference/cli.md and docs/reference/http.md at `mkdocs build` time (mkdocs-gen-files).

cli.md is the `--help` of every command and subcommand, from the real argparse parser
(vggsim.cli.build_parser); http.md is the HTTP API from the service's own OpenAPI schema
(vggsim.serve.app.create_app, built around a stand-in embedder: the routes and their schema do not
need a model, and nothing is served). Both pages change only when the code does.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import mkdocs_gen_files

os.environ["COLUMNS"] = "100"  # argparse wraps help text to the terminal's width: make the page the same everywhere


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command words, parser) pair under ``parser``, depth first, in registration order."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*words, name))


def cli_page() -> str:
    from vggsim.cli import build_parser

    out = ["# Command line reference", "",
           "Generated at build time from the `vggsim` argument parser (`vggsim.cli.build_parser`): each section is",
           "exactly what `vggsim COMMAND --help` prints. The [command line guide](../guide/cli.md) explains exit codes,",
           "`--json` output and the rest.", ""]
    for words, parser in walk(build_parser(), ("vggsim",)):
        out += [f"## `{' '.join(words)}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def openapi_schema() -> dict[str, Any]:
    from vggsim.serve.app import create_app
    from vggsim.serve.config import ServeConfig

    # The routes read the embedder only while serving; building the app touches these few attributes.
    stand_in = SimpleNamespace(run=lambda batch: batch, max_pixels=89_478_485, spec=None, manifest={}, dim=512,
                               input_size=(224, 224), provider="CPUExecutionProvider", model_sha256="0" * 64)
    app = create_app(ServeConfig(), embedder=stand_in)  # type: ignore[arg-type]
    return dict(app.openapi())


def http_page(schema: dict[str, Any]) -> str:
    out = ["# HTTP API reference", "",
           f"Generated at build time from the service's OpenAPI schema ({schema['info']['title']} "
           f"{schema['info']['version']}; a running service serves the same at `/openapi.json` and Swagger UI at",
           "`/docs`). The [serving guide](../guide/serving.md) has curl examples, the error table, options and metrics.",
           "The whole schema: [openapi.json](openapi.json).", ""]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            out += [f"## `{method.upper()} {path}`", ""]
            if op.get("summary"):
                out += [f"**{op['summary']}**", ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                for p in params:
                    kind = p.get("schema", {})
                    typ = kind.get("type") or " or ".join(str(a.get("type")) for a in kind.get("anyOf", [])) or ""
                    desc = " ".join(str(p.get("description", "")).split()).replace("|", "\\|")
                    out.append(f"| `{p['name']}` | {p['in']} | {typ} | {'yes' if p.get('required') else 'no'} | {desc} |")
                out.append("")
            body = op.get("requestBody")
            if body:
                types = ", ".join(f"`{t}`" for t in body.get("content", {}))
                out += [f"Request body: {types}.", ""]
            responses = op.get("responses", {})
            if responses:
                out += ["| status | meaning |", "|---|---|"]
                for code, r in responses.items():
                    ref = next((c.get("schema", {}).get("$ref", "") for c in r.get("content", {}).values()), "")
                    name = ref.rsplit("/", 1)[-1]
                    shape = f" ([`{name}`](#{name.lower()}))" if name else ""
                    out.append(f"| {code} | {' '.join(str(r.get('description', '')).split())}{shape} |")
                out.append("")
    schemas = schema.get("components", {}).get("schemas", {})
    if schemas:
        out += ["## Schemas", ""]
    for name, body in schemas.items():
        out += [f"### {name}", ""]
        if body.get("description"):
            out += [" ".join(body["description"].split()), ""]
        props = body.get("properties", {})
        if props:
            out += ["| field | type | description |", "|---|---|---|"]
            for field, spec in props.items():
                typ = spec.get("type") or spec.get("$ref", "").rsplit("/", 1)[-1] or " or ".join(
                    str(a.get("type") or a.get("$ref", "").rsplit("/", 1)[-1]) for a in spec.get("anyOf", []))
                desc = " ".join(str(spec.get("description", "")).split()).replace("|", "\\|")
                out.append(f"| `{field}` | {typ} | {desc} |")
            out.append("")
    return "\n".join(out)


schema = openapi_schema()
with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
with mkdocs_gen_files.open("reference/http.md", "w") as f:
    f.write(http_page(schema))
with mkdocs_gen_files.open("reference/openapi.json", "w") as f:
    json.dump(schema, f, indent=1)
