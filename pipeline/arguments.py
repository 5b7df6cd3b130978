"""Command-line flags derived from configuration dataclasses, as transformers' `HfArgumentParser`
derives them: each field is one flag, with the field's type, default, choices and help.

Fields are declared with `option(...)`, so the default and the help text are written once. A flag
that is given is remembered, so that `ser train --config X --epochs 5` can apply it over the YAML
file while flags left out keep the file's values.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from types import UnionType
from typing import Any, Union

GIVEN = "_given_flags"  # namespace attribute: the dests of the flags on the command line


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    choices: tuple | None = None,
    words: bool = False,
) -> Any:
    """A dataclass field with what its flag needs: `help`, optional `choices` and a `flag` name other
    than `--field-name`. A field without a default is a required flag. A list flag takes one
    comma-separated value (`none`: the empty list), or with `words` one or more words (it then
    cannot precede positional arguments)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "words": words}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def _remember(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, GIVEN, [*getattr(namespace, GIVEN, []), dest])


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _remember(namespace, self.dest)


def _items(choices: tuple | None):
    def parse(text: str) -> list[str]:
        """A list flag's value: comma-separated items; `none` is the empty list."""
        items = [] if text.lower() == "none" else [item for item in text.split(",") if item]
        wrong = [item for item in items if choices and item not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {wrong[0]!r} (choose from {', '.join(choices)})"
            )
        return items

    return parse


class _Extend(_Store):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, [item for value in values for item in value], option_string)


class _Switch(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _remember(namespace, self.dest)


def int_list(text: str) -> list[int]:
    """A flag's comma-separated integers: "0,1,2" -> [0, 1, 2]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (0,1,2), got {text!r}") from None


def positive_int(text: str) -> int:
    """A flag's whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _none_or(kind: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _kind(hint) -> tuple[Any, bool]:
    """(the non-None type of an annotation, whether None is allowed)."""
    if typing.get_origin(hint) in (Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def config_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, type hint) of every leaf field of `cls`, nested dataclasses included."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found += config_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            found.append((prefix + f.name, f, hints[f.name]))
    return found


def field_default(f: dataclasses.Field) -> Any:
    """The field's default; dataclasses.MISSING for a required field."""
    if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (mappings excepted: YAML or `section.key=value` only), its help
    ending with its default, or `(required)`."""
    for name, f, hint in config_fields(cls):
        kind, nullable = _kind(hint)
        if name in skip or typing.get_origin(kind) is dict or kind is dict:
            continue
        meta, default = f.metadata, field_default(f)
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        text = meta.get("help", "").replace("%", "%%")  # argparse formats help with %
        shown = ",".join(default) if isinstance(default, list) else default
        shown = "none" if shown in (None, "") else shown
        required = default is dataclasses.MISSING
        note = "required" if required else f"default: {shown}"
        kwargs: dict[str, Any] = {"dest": name, "help": f"{text} ({note})"}
        kwargs.update({"required": True} if required else {"default": default})
        if kind is bool:
            parser.add_argument(flag, action=_Switch, **kwargs)
            continue
        choices = meta.get("choices")
        shown_choices = choices and "{" + ",".join("none" if c is None else str(c) for c in choices) + "}"
        kwargs["metavar"] = shown_choices or f.name.upper()
        if typing.get_origin(kind) is list:  # items are checked one by one: `ravdess,emodb`
            kwargs["type"] = _items(choices)
            if meta.get("words"):
                kwargs["nargs"] = "+"
        else:
            kwargs.update(type=_none_or(kind) if nullable else kind, choices=choices)
        parser.add_argument(flag, action=_Extend if kwargs.get("nargs") == "+" else _Store, **kwargs)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """{dotted name: value} of the flags on the command line."""
    return {dest: getattr(args, dest) for dest in getattr(args, GIVEN, [])}


def from_flags(cls: type, args: argparse.Namespace, prefix: str = "") -> Any:
    """An instance of `cls` from the flags `add_flags` made (defaults for fields without a flag)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = from_flags(hints[f.name], args, name + ".")
        elif hasattr(args, name):
            values[f.name] = getattr(args, name)
    return cls(**values)
