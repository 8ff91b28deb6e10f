"""Command-line options generated from frozen config dataclasses, one vocabulary for every command.

A config field says what its option needs through ``option``; ``add_config`` turns the fields into
argparse options (``image_size`` -> ``--image-size``; booleans get ``--x/--no-x``) with their help,
their default shown, ``choices`` and range checks; ``check`` runs the same checks on a config built
in code. ``config_from`` builds the config from parsed arguments, over a base (a smoke variant)
when one is given: options typed on the command line win over the base, the others keep it.

    @dataclass(frozen=True)
    class Config:
        records: str = option(help="records folder")               # no default: required
        epochs: int = option(10, help="passes over the data", lo=1)
        head: str = option("arcface", help="loss head", choices=("arcface", "softmax"))

        def __post_init__(self):
            check(self)

    p = parser(__doc__)
    add_config(p, Config)
    cfg = config_from(Config, parse(p), base=smoke_config)   # typed options over the smoke variant
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

_REQUIRED = dataclasses.MISSING


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default (or "required") after its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return text + " (required)"
        if action.default is argparse.SUPPRESS or "%(default)" in text or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2), as every other bad
    input of our commands is: the full usage is what ``--help`` is for."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A ``Parser`` with the script's docstring as its description and defaults shown."""
    return Parser(description=doc, formatter_class=HelpFormatter)


def option(default: Any = _REQUIRED, *, help: str, choices: tuple | None = None, lo: float | None = None,
           hi: float | None = None, cli: bool = True) -> Any:
    """A config field with what its command-line option needs; ``cli=False`` keeps it off the
    command line (set in code only)."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "cli": cli}
    return dataclasses.field(default=default, metadata=meta)


def _problem(name: str, value: Any, meta: typing.Mapping) -> str | None:
    flag = "--" + name.replace("_", "-")
    if meta.get("choices") and value not in meta["choices"]:
        return f"{flag} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}"
    if meta.get("lo") is not None and value < meta["lo"]:
        return f"{flag} must be >= {meta['lo']}; got {value}"
    if meta.get("hi") is not None and value > meta["hi"]:
        return f"{flag} must be <= {meta['hi']}; got {value}"
    return None


def check(cfg: Any) -> None:
    """Raise ``ValueError`` (one line, naming the flag) for a field outside its choices or range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is not None and (msg := _problem(f.name, value, f.metadata)):
            raise ValueError(msg)


def _checked(typ: type, name: str, meta: typing.Mapping):
    def convert(text: str):
        value = typ(text)
        if msg := _problem(name, value, {**meta, "choices": None}):
            raise argparse.ArgumentTypeError(msg.split(" ", 1)[1])
        return value

    convert.__name__ = typ.__name__  # argparse names the type in its error messages
    return convert


def add_config(p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Options for ``cls``'s fields (those made with ``option``, not in ``skip``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta or not meta.get("cli", True) or f.name in skip:
            continue
        flag, typ = "--" + f.name.replace("_", "-"), hints[f.name]
        kw: dict[str, Any] = {"help": meta["help"], "dest": f.name}
        if f.default is _REQUIRED:
            kw["required"] = True
        else:
            kw["default"] = f.default
        if typ is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        base = next((t for t in typing.get_args(typ) if t is not type(None)), typ)  # "str | None" -> str
        kw["type"] = _checked(base, f.name, meta) if base in (int, float) else base
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        p.add_argument(flag, **kw)


def given(p: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options typed in ``argv`` (not those left at their defaults)."""
    saved, parser_defaults = {a.dest: a.default for a in p._actions}, p._defaults
    try:  # neither the options' defaults nor the parser's (``set_defaults``) count as typed
        for a in p._actions:
            a.default = argparse.SUPPRESS
        p._defaults = {}
        ns, _ = p.parse_known_args(argv)
    finally:
        for a in p._actions:
            a.default = saved[a.dest]
        p._defaults = parser_defaults
    return set(vars(ns))


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``p.parse_args(argv)``, with ``given``: the options typed on the command line."""
    args = p.parse_args(argv)
    args.given = given(p, argv)
    return args


def config_from(cls: type, args: argparse.Namespace, base: Any = None) -> Any:
    """``cls`` from parsed ``args``; over ``base`` only the options typed (``args.given``, see
    ``parse``) replace its values."""
    names = {f.name for f in dataclasses.fields(cls)}
    if base is None:
        return cls(**{k: v for k, v in vars(args).items() if k in names})
    return dataclasses.replace(base, **{k: getattr(args, k) for k in getattr(args, "given", set()) & names})
