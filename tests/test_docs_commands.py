"""Every `vggsim` command shown in README.md, CONTRIBUTING.md and docs/ parses with the real parser.

Commands are taken from code blocks (fenced ```bash, ```sh, ```console or ```shell blocks, and
indented blocks): each line that runs `vggsim` (also `$ vggsim`, `.venv/bin/vggsim`,
`python -m vggsim`, after `VAR=value` assignments), up to a pipe, `;`, `&&` or a redirection, with
`\\` continuations joined and `# comments` dropped. Each is given to `build_parser().parse_args`:
nothing runs, but an option or a subcommand that does not exist fails, naming the file and line.
`--help` must exit 0.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from vggsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGS = {"bash", "sh", "console", "shell"}
PROGRAMS = (("vggsim",), (".venv/bin/vggsim",), ("python", "-m", "vggsim"), ("python3", "-m", "vggsim"))
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    words: tuple[str, ...]  # the arguments after the program name


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a shell code block, continuations joined."""
    out: list[tuple[int, str]] = []
    fence: str | None = None  # the open fence's language ("" for none)
    previous_blank, indented = True, False  # an indented code block starts after a blank line
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence is None:
            if line.startswith("    "):
                indented = indented or previous_blank
            elif stripped:
                indented = False
            previous_blank = not stripped
        in_shell = fence in SHELL_LANGS or (fence is None and indented and line.startswith("    "))
        if not in_shell:
            pending = None
            continue
        if pending is not None:
            start, joined = pending
            line = joined + " " + stripped
            number = start
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        pending = None
        out.append((number, line.strip()))
    return out


def command_words(line: str) -> tuple[str, ...] | None:
    """The words after `vggsim` on a shell line, or None if the line does not run vggsim."""
    if line.startswith("$ "):
        line = line[2:]
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a command line
        return None
    words: list[str] = []
    for token in tokens:
        if token and set(token) <= set("|;&<>()"):
            break  # a pipe, list or redirection ends the vggsim command
        words.append(token)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    for program in PROGRAMS:
        if tuple(words[:len(program)]) == program:
            return tuple(words[len(program):])
    return None


def commands_in(path: Path, text: str | None = None) -> list[Command]:
    text = path.read_text(encoding="utf-8") if text is None else text
    found = []
    for number, line in code_lines(text):
        words = command_words(line)
        if words is not None:
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(Command(f"{where}:{number}", words))
    return found


def all_commands() -> list[Command]:
    return [c for f in doc_files() for c in commands_in(f)]


def parse_error(words: tuple[str, ...]) -> str | None:
    """None if `vggsim WORDS` parses (or is a --help that exits 0); else argparse's message."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            build_parser().parse_args(list(words))
    except SystemExit as exc:
        if exc.code in (0, None) and ("--help" in words or "-h" in words or "--version" in words):
            return None
        return err.getvalue().strip() or f"exit {exc.code}"
    return None


COMMANDS = all_commands()


def test_the_docs_show_commands() -> None:
    """The extraction finds the documented commands (an empty list would pass everything)."""
    assert len(COMMANDS) >= 30, [c.where for c in COMMANDS]
    shown = {c.words[0] for c in COMMANDS if c.words}
    assert {"export", "compare", "embed", "search", "dedup", "serve", "index", "store", "doctor", "bench"} <= shown


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(command: Command) -> None:
    error = parse_error(command.words)
    assert error is None, f"{command.where}: `vggsim {shlex.join(command.words)}` does not parse:\n{error}"


def _subcommands(parser: object, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import argparse

    out = [words] if words else []
    for action in getattr(parser, "_actions", []):
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += _subcommands(child, (*words, name))
    return out


@pytest.mark.parametrize("words", _subcommands(build_parser()), ids=" ".join)
def test_every_subcommand_has_help(words: tuple[str, ...]) -> None:
    assert parse_error((*words, "--help")) is None


def test_an_invented_option_fails(tmp_path: Path) -> None:
    """The check catches a documented option that does not exist (and keeps what follows a pipe out)."""
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n```bash\n"
                    "vggsim embed photos/ --store photos.vgg --json | jq .embedded   # a real command\n"
                    "$ vggsim search q.jpg --store photos.vgg --no-such-option 3\n"
                    "VGGSIM_MODEL=m vggsim \\\n  dedup --store s.vgg --threshhold 0.9\n"
                    "vggsim frobnicate --store s.vgg\n"
                    "```\n\n    vggsim compare a.jpg b.jpg --plott out.png\n", encoding="utf-8")
    found = commands_in(page)
    assert [c.words[0] for c in found] == ["embed", "search", "dedup", "frobnicate", "compare"]
    errors = {c.words[0]: parse_error(c.words) for c in found}
    assert errors["embed"] is None
    assert "--no-such-option" in (errors["search"] or "")
    assert "--threshhold" in (errors["dedup"] or "")
    assert "frobnicate" in (errors["frobnicate"] or "")
    assert "--plott" in (errors["compare"] or "")
