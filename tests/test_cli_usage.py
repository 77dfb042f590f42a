"""An unrecognized option is reported by the command's own parser, with its usage, so the user
sees the options that do exist (F-docs-1: `dedup --json OUT.json` showed only `vggsim COMMAND`)."""

from __future__ import annotations

import pytest

from vggsim.cli import main


@pytest.mark.parametrize(("argv", "usage"), [
    (["dedup", "--store", "s.vgg", "--json", "out/groups.json"], "usage: vggsim dedup"),
    (["dedup", "--store", "s.vgg", "--exif-transpose"], "usage: vggsim dedup"),
    (["store", "verify", "s.vgg", "--bogus"], "usage: vggsim store verify"),
])
def test_unrecognized_option_shows_the_subcommand_usage(argv: list[str], usage: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    err = capsys.readouterr().err
    assert raised.value.code == 2 and err.startswith(usage) and "unrecognized arguments" in err
    if argv[0] == "dedup":
        assert "--out OUT.json" in err  # the option the user was looking for is in sight
