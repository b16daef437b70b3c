"""Settings: each config field says once its default, its range or choices and a line of help.

A config dataclass declares its fields with `setting(...)` (field metadata, as TRL's configs do for
`HfArgumentParser`). Everything else derives from that one declaration: the checks in `__post_init__`
(`check`), the command line's flags (`add_arguments`), the app's widgets (`widget`), and the one function that
turns loose settings — a CLI namespace, a form, a URL, an experiment plan, a bench row — into a config
(`build`). Nested configs (`DistillConfig.steering`, `.sampling`) are flattened into one namespace of names, so
a form or a flag says `gamma`, not `steering.gamma`; names are unique across the nesting (a test checks).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What a field is for and which values it takes; `label` is the app's wording (default: `help`)."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    step: float | None = None  # the app's step between values
    fmt: str | None = None  # the app's number format, e.g. "%.0e"
    label: str | None = None
    flag: str | None = None  # the command line's flag, when not `--field-name`
    parse: Callable[[str], Any] | None = None  # text (a flag, a URL) -> value, when not the default's type
    words: str | None = None  # the name in words, for messages: "lr (learning rate) must be ..."

    @property
    def text(self) -> str:
        return self.label or self.help


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **about) -> Any:
    """A dataclass field carrying its `Setting`."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"setting": Setting(**about)})


@dataclass(frozen=True)
class Entry:
    """One flattened setting: where it sits in the config (`path`), its declaration and its default."""

    name: str
    path: tuple[str, ...]
    about: Setting
    default: Any

    @property
    def kind(self) -> type:
        """bool, int, float or str, from the default (a setting whose values vary in type has `parse`)."""
        return type(self.default)

    @property
    def flag(self) -> str:
        return self.about.flag or "--" + self.name.replace("_", "-")

    def coerce(self, value: Any) -> Any:
        """A value from a form or a namespace in the field's type: 3.0 -> 3 for a whole number, "1e-3" -> 0.001."""
        if isinstance(value, str) and (self.about.parse is not None or self.kind in (int, float)):
            return self.parse(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def parse(self, text: str) -> Any:
        """Text (a flag, a URL parameter) -> value; ValueError names the setting."""
        try:
            if self.about.parse is not None:
                return self.about.parse(text)
            if self.kind is bool:
                return text.strip().lower() in ("1", "true", "yes", "on")
            return self.kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {_expected(self)}, got {text!r}") from None


def _expected(entry: Entry) -> str:
    if entry.about.choices:
        return "one of " + ", ".join(map(str, entry.about.choices))
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(entry.kind, "text")


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def entries(config_class: type) -> dict[str, Entry]:
    """Every setting of `config_class` and of the configs nested in it, by name, defaults from an instance."""
    out: dict[str, Entry] = {}

    def walk(instance: Any, path: tuple[str, ...]) -> None:
        for field in dataclasses.fields(instance):
            value = getattr(instance, field.name)
            if _is_config(value):
                walk(value, path + (field.name,))
            elif "setting" in field.metadata:
                if field.name in out:
                    raise TypeError(f"setting {field.name!r} is declared twice in {config_class.__name__}")
                out[field.name] = Entry(field.name, path + (field.name,), field.metadata["setting"], value)

    walk(config_class(), ())
    return out


def check(config: Any, skip: Iterable[str] = ()) -> None:
    """The checks every declared field implies: its type, its range, its choices (nested configs check
    themselves). A config's own `__post_init__` calls this, then checks what relates fields to each other."""
    for field in dataclasses.fields(config):
        about = field.metadata.get("setting")
        if about is None or field.name in skip:
            continue
        value = getattr(config, field.name)
        if about.parse is not None:  # a value of several kinds ("auto" or a number) checks itself in its parse
            continue
        named = f"{field.name} ({about.words})" if about.words else field.name
        check_value(named, about, value, type(field.default) if field.default is not dataclasses.MISSING else None)


def check_value(name: str, about: Setting, value: Any, kind: type | None) -> None:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if about.choices is not None and value not in about.choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, about.choices))}; got {value!r}")
    if kind in (int, float):
        if math.isnan(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if about.low is not None and about.high is not None and not about.low <= value <= about.high:
            raise ValueError(f"{name} must be between {about.low:g} and {about.high:g}, got {value:g}")
        if about.low is not None and value < about.low:
            raise ValueError(f"{name} must be >= {about.low:g}, got {value:g}")
        if about.high is not None and value > about.high:
            raise ValueError(f"{name} must be <= {about.high:g}, got {value:g}")


def build(config_class: type, values: Mapping[str, Any] = {}, base: Any = None) -> Any:
    """The config that `values` (flat names) describe, the rest from `base` (default: the class's defaults).

    The one way loose settings become a config: the CLI, the app's forms and links, the experiment plan and the
    bench all call it. An unknown name is an error, not ignored: a misspelt setting would silently fall back.
    """
    table = entries(config_class)
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(table))})")
    base = base if base is not None else config_class()

    def rebuild(instance: Any, path: tuple[str, ...]) -> Any:
        changes = {}
        for field in dataclasses.fields(instance):
            value = getattr(instance, field.name)
            if _is_config(value):
                nested = rebuild(value, path + (field.name,))
                if nested is not value:
                    changes[field.name] = nested
            elif field.name in values and table.get(field.name) and table[field.name].path == path + (field.name,):
                changes[field.name] = table[field.name].coerce(values[field.name])
        return dataclasses.replace(instance, **changes) if changes else instance

    return rebuild(base, ())


def flat(config: Any) -> dict[str, Any]:
    """A config's settings by flat name (the inverse of `build`)."""
    out = {}
    for name, entry in entries(type(config)).items():
        value = config
        for part in entry.path:
            value = getattr(value, part)
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------ the command line


def add_arguments(
    parser: argparse.ArgumentParser, config_class: type, names: Iterable[str], defaults: Mapping[str, Any] = {}
) -> None:
    """One flag per named setting: its type, choices, default (`defaults` overrides the config's) and help."""
    table = entries(config_class)
    for name in names:
        entry = table[name]
        default = defaults.get(name, entry.default)
        if entry.kind is bool and entry.about.parse is None:
            parser.add_argument(entry.flag, dest=name, action="store_true", default=default, help=entry.about.help)
            continue
        parser.add_argument(
            entry.flag,
            dest=name,
            type=entry.parse,
            default=default,
            choices=entry.about.choices,
            help=f"{entry.about.help} (default: {default})",
        )


def from_arguments(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The named settings as a CLI namespace holds them, for `build`."""
    return {name: getattr(args, name) for name in names}


# ------------------------------------------------------------------------------------------ the app's widgets


def widget(config_class: type, name: str, default: Any = None) -> dict[str, Any]:
    """Keyword arguments for `st.number_input` / `st.slider` / `st.selectbox` of one setting: label, range,
    step, format, help and value (`default` overrides the config's, e.g. the app's shorter runs)."""
    entry = entries(config_class)[name]
    about = entry.about
    value = entry.default if default is None else default
    if about.choices is not None:
        return {
            "label": about.text,
            "options": list(about.choices),
            "index": list(about.choices).index(value),
            "help": about.help,
        }
    out = {"label": about.text, "value": value, "help": about.help if about.label else None}
    if about.low is not None:
        out["min_value"] = entry.kind(about.low)
    if about.high is not None:
        out["max_value"] = entry.kind(about.high)
    if about.step is not None:
        out["step"] = entry.kind(about.step)
    if about.fmt is not None:
        out["format"] = about.fmt
    return out
