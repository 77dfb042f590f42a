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


def test_export_isa_passes_the_instruction_set_to_the_int8_export(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: object,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # The int8 settings are chosen per instruction set; --isa picks a row other than
    # this CPU's, and an unknown one is a usage error.
    import vggsim.export.variants as variants

    seen: dict[str, object] = {}
    import vggsim.export as export_package
    monkeypatch.setattr(export_package, "export_model", lambda out, **_: None)
    monkeypatch.setattr(variants, "export_variant", lambda *a, **k: seen.update(k))
    main(["export", "--precision", "int8", "--isa", "avx2", "--weights", "random", "--out", f"{tmp_path}/m"])
    assert seen["isa"] == "avx2"
    with pytest.raises(SystemExit) as raised:
        main(["export", "--precision", "int8", "--isa", "sse2"])
    assert raised.value.code == 2 and "invalid choice" in capsys.readouterr().err
