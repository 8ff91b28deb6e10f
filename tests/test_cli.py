"""Every command's options: a help line and a default (or "required") in ``--help``; and the
dataclass -> argparse helper (``runtime.flags``) on a hand-made config."""

from __future__ import annotations

import argparse
import importlib
import subprocess
from dataclasses import dataclass

import pytest

from runtime import flags
from runtime.flags import check, option


def commands() -> list[str]:
    """Every script module of the packages (a ``main()`` that parses and calls)."""
    out = subprocess.run(["git", "grep", "-l", "^def main(", "--", "runtime", "tfrecords", "stage1_detect",
                          "stage2_embed", "pipeline", "bench"], capture_output=True, text=True, check=True).stdout
    return sorted(p[:-3].replace("/", ".") for p in out.split())


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command builds, caught as it parses ``--help``."""
    caught = []

    def grab(self, *args, **kwargs):
        caught.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", grab)
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit):
        (getattr(mod, "parse_args", None) or mod.main)(["--help"])
    return caught[0]


def test_the_command_list_is_complete():
    wanted = {"pipeline.infer", "stage1_detect.train", "stage2_embed.train", "tfrecords.build", "bench.real"}
    assert wanted <= set(commands())


@pytest.mark.parametrize("module", commands())
def test_every_option_has_help_and_shows_its_default(module, monkeypatch):
    p = parser_of(module, monkeypatch)
    fmt = p._get_formatter()
    for a in p._actions:
        if isinstance(a, argparse._HelpAction) or not a.option_strings:
            continue
        shown = fmt._get_help_string(a)
        assert a.help, f"{module} {a.option_strings[0]}: no help"
        assert "(required)" in shown or "%(default)" in shown, f"{module} {a.option_strings[0]}: no default shown"


@dataclass(frozen=True)
class Toy:
    records: str = option(help="records folder")
    epochs: int = option(10, help="passes", lo=1)
    head: str = option("arcface", help="loss head", choices=("arcface", "softmax"))
    flip: bool = option(False, help="random flips")
    share: float | None = option(None, help="a share", lo=0.0, hi=1.0)

    def __post_init__(self) -> None:
        check(self)


def toy_parser() -> argparse.ArgumentParser:
    p = flags.parser("toy")
    flags.add_config(p, Toy)
    return p


def test_config_from_options_with_types_choices_and_negatable_booleans():
    cfg = flags.config_from(Toy, flags.parse(toy_parser(), ["--records", "r", "--epochs", "3", "--flip",
                                                            "--share", "0.25"]))
    assert cfg == Toy(records="r", epochs=3, head="arcface", flip=True, share=0.25)
    assert flags.config_from(Toy, flags.parse(toy_parser(), ["--records", "r", "--no-flip"])).flip is False


def test_typed_options_win_over_a_base_and_the_others_keep_it():
    base = Toy(records="base", epochs=2, head="softmax", flip=True)
    args = flags.parse(toy_parser(), ["--records", "r", "--epochs", "10"])  # 10 is also the default
    assert args.given == {"records", "epochs"}
    p = toy_parser()
    p.set_defaults(head="softmax")  # a command's own defaults (kaggle_tpu.py) are not typed options either
    assert flags.parse(p, ["--records", "r"]).given == {"records"}
    assert flags.config_from(Toy, args, base) == Toy(records="r", epochs=10, head="softmax", flip=True)


@pytest.mark.parametrize("argv, message", [
    (["--records", "r", "--epochs", "0"], "must be >= 1"),
    (["--records", "r", "--head", "cosface"], "invalid choice"),
    (["--records", "r", "--share", "1.5"], "must be <= 1.0"),
    ([], "required"),
])
def test_bad_values_stop_at_the_parser_with_the_rule(argv, message, capsys):
    with pytest.raises(SystemExit):
        toy_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_config_built_in_code_is_checked_too():
    with pytest.raises(ValueError, match="--epochs must be >= 1; got 0"):
        Toy(records="r", epochs=0)
    with pytest.raises(ValueError, match="--head must be one of arcface, softmax"):
        Toy(records="r", head="cosface")


def test_help_shows_defaults_and_required():
    text = toy_parser().format_help()
    assert "records folder (required)" in text and "passes (default: 10)" in text
    assert "loss head (default: arcface)" in text


def test_console_commands_point_at_every_packaged_command():
    import tomllib

    from conftest import ROOT

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    targets = {v.split(":")[0] for v in scripts.values()}
    assert targets == {m for m in commands() if not m.startswith("bench.")}
    for target in scripts.values():
        module, fn = target.split(":")
        assert callable(getattr(importlib.import_module(module), fn))
