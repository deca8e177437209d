"""Strict loading of parsed TOML and YAML into frozen dataclasses, with every problem reported.

Config and policy files are small, but an operator who fixes one wants every
mistake at once, each at the place it sits. `load(cls, data)` walks the type
hints of the dataclass `cls` and checks `data` against them strictly: unknown
keys are errors, numbers are never read from strings, booleans are not
numbers. It raises `Invalid` with one `Problem` per mistake, each with its
location (`("rules", 0, "timeout")`), so that callers can point at the line.

Supported hints: `str`, `int`, `float` (an int is a number too), `bool`,
`Literal[...]`, `tuple[X, ...]` (from a list), `dict[K, V]`, nested
dataclasses, unions (the branch is chosen by the shape of the input: a
mapping goes to the dataclass branch), and `Annotated[X, ...]` with the
markers below. A dataclass's `__post_init__` may raise ValueError for checks
that span fields; the problem is then reported at the dataclass's location,
or, for a `FieldError`, at the part of it the error names.

`dump(obj)` is the way back: the JSON-able form, with aliases and each
`Parse` marker's `dump`. This module is why a proxy carries no validation
framework: it is the part of one that vmesh's files need.
"""

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

Loc = tuple[str | int, ...]
T = TypeVar("T")

ALIAS = "alias"  # dataclass field metadata: the key the field has in files (`from`)


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: where it is, what kind (`missing`, `int_type`, ...) and what to say."""

    loc: Loc
    kind: str
    message: str
    value: Any = None  # the input at `loc`, for type problems

    def __str__(self) -> str:
        where = dotted(self.loc)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} (got {self.value!r})" if self.kind.endswith("_type") else text


class FieldError(ValueError):
    """A `__post_init__` check that blames one part of the dataclass: `loc` within it."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Invalid(ValueError):
    """The input does not fit; `problems` lists every mistake found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Check:
    """After the type fits: `check(value)` returns the value to keep or raises ValueError."""

    check: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Parse:
    """Instead of a type check: `parse(raw)` builds the value or raises ValueError; `dump`
    turns the value back into what a file would say."""

    parse: Callable[[Any], Any]
    dump: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds of a number."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def problem(self, value: float) -> tuple[str, str] | None:
        if self.ge is not None and value < self.ge:
            return "greater_than_equal", f"Input should be greater than or equal to {self.ge}"
        if self.gt is not None and value <= self.gt:
            return "greater_than", f"Input should be greater than {self.gt}"
        if self.le is not None and value > self.le:
            return "less_than_equal", f"Input should be less than or equal to {self.le}"
        return None


@dataclass(frozen=True, slots=True)
class MinLength:
    """The least number of items of a list."""

    items: int


def load(cls: type[T], data: Any) -> T:
    """`data` as an instance of the dataclass `cls`; Invalid lists every problem."""
    problems: list[Problem] = []
    value = _convert(cls, data, (), problems)
    if problems:
        raise Invalid(problems)
    return typing.cast("T", value)


def dump(value: Any, hint: Any = None, *, exclude_none: bool = True) -> Any:
    """The JSON-able form of a loaded value: dataclasses as mappings under their file keys
    (without the fields that are None, unless `exclude_none` is false); tuples as lists."""
    base, markers = _split(hint)
    if _is_union(base):
        branch = next((b for b in typing.get_args(base) if _fits_runtime(b, value)), None)
        return dump(value, branch, exclude_none=exclude_none)
    parse = next((m for m in markers if isinstance(m, Parse)), None)
    if parse is not None and parse.dump is not None:
        return parse.dump(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {
            f.metadata.get(ALIAS, f.name): dump(item, hints[f.name], exclude_none=exclude_none)
            for f in dataclasses.fields(value)
            if (item := getattr(value, f.name)) is not None or not exclude_none
        }
    if isinstance(value, tuple | list):
        return [dump(item, _item_hint(base), exclude_none=exclude_none) for item in value]
    if isinstance(value, dict):
        value_hint = typing.get_args(base)[1] if typing.get_origin(base) is dict else None
        return {key: dump(item, value_hint, exclude_none=exclude_none)
                for key, item in value.items()}
    return value


def dotted(loc: Loc) -> str:
    """`rules[0].timeout` for `("rules", 0, "timeout")`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- conversion --------------------------------------------------------------------------

_INVALID: Any = object()  # a value that did not convert; its problems are recorded

_SCALARS: dict[type, tuple[str, str]] = {
    str: ("string_type", "Input should be a valid string"),
    int: ("int_type", "Input should be a valid integer"),
    float: ("float_type", "Input should be a valid number"),
    bool: ("bool_type", "Input should be a valid boolean"),
}


def _convert(hint: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    base, markers = _split(hint)
    parse = next((m for m in markers if isinstance(m, Parse)), None)
    if parse is not None:
        value = _call(parse.parse, raw, loc, problems)
    else:
        value = _convert_base(base, raw, loc, problems)
    if value is _INVALID or value is None:
        return value
    for marker in markers:
        if isinstance(marker, Range) and (found := marker.problem(value)):
            problems.append(Problem(loc, *found, value))
            return _INVALID
        if isinstance(marker, MinLength) and len(value) < marker.items:
            plural = "s" if marker.items > 1 else ""
            problems.append(Problem(loc, "too_short",
                                    f"should have at least {marker.items} item{plural}", value))
            return _INVALID
        if isinstance(marker, Check):
            value = _call(marker.check, value, loc, problems)
            if value is _INVALID:
                return value
    return value


def _convert_base(base: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    if base in _SCALARS:
        if _fits_scalar(base, raw):
            return float(raw) if base is float else raw
        problems.append(Problem(loc, *_SCALARS[base], raw))
        return _INVALID
    origin = typing.get_origin(base)
    if origin is Literal:
        options = typing.get_args(base)
        if raw in options and not isinstance(raw, bool):
            return raw
        problems.append(Problem(loc, "literal_error", f"Input should be {_either(options)}", raw))
        return _INVALID
    if _is_union(base):
        branches = typing.get_args(base)
        if raw is None and type(None) in branches:
            return None
        real = [b for b in branches if b is not type(None)]
        chosen = next((b for b in real if _fits_shape(b, raw)), real[0])
        return _convert(chosen, raw, loc, problems)
    if origin is tuple:
        return _convert_tuple(base, raw, loc, problems)
    if origin is dict:
        return _convert_dict(base, raw, loc, problems)
    if dataclasses.is_dataclass(base):
        return _convert_dataclass(base, raw, loc, problems)
    raise TypeError(f"schema: unsupported type hint {base!r}")


def _convert_tuple(base: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(raw, list | tuple):
        message = (f"expected a list, like [{raw}]" if isinstance(raw, str | int)
                   else f"expected a list, not {raw!r}")
        problems.append(Problem(loc, "list_expected", message))
        return _INVALID
    item_hint = _item_hint(base)
    items = [_convert(item_hint, item, (*loc, i), problems) for i, item in enumerate(raw)]
    return _INVALID if any(item is _INVALID for item in items) else tuple(items)


def _convert_dict(base: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(Problem(loc, "dict_type", "Input should be a valid dictionary", raw))
        return _INVALID
    key_hint, value_hint = typing.get_args(base)
    out = {}
    failed = False
    for key, item in raw.items():
        converted_key = _convert(key_hint, key, (*loc, str(key)), problems)
        converted = _convert(value_hint, item, (*loc, str(key)), problems)
        failed = failed or converted_key is _INVALID or converted is _INVALID
        out[converted_key] = converted
    return _INVALID if failed else out


def _convert_dataclass(cls: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(Problem(loc, "dict_type",
                                f"Input should be a mapping of {cls.__name__} fields", raw))
        return _INVALID
    hints = _hints(cls)
    known: list[str] = []  # keys of the fields, in their order
    values: dict[str, Any] = {}
    failed = False
    for f in dataclasses.fields(cls):
        key = f.metadata.get(ALIAS, f.name)
        known.append(key)
        if key in raw:
            values[f.name] = _convert(hints[f.name], raw[key], (*loc, key), problems)
            failed = failed or values[f.name] is _INVALID
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(Problem((*loc, key), "missing", "Field required"))
            failed = True
    for key in raw:
        if key not in known:
            problems.append(Problem((*loc, str(key)), "extra_forbidden",
                                    _unknown_key(str(key), known)))
            failed = True
    if failed:
        return _INVALID
    try:
        return cls(**values)
    except FieldError as exc:  # a check across fields that blames one of them
        problems.append(Problem((*loc, *exc.loc), "value_error", str(exc)))
        return _INVALID
    except ValueError as exc:  # a check across fields, from __post_init__
        problems.append(Problem(loc, "value_error", str(exc)))
        return _INVALID


def _unknown_key(key: str, known: list[str]) -> str:
    """What to say of a key the dataclass has no field for: the likely one meant, else all."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of {', '.join(known)}"


def _call(function: Callable[[Any], Any], raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    try:
        return function(raw)
    except ValueError as exc:
        problems.append(Problem(loc, "value_error", str(exc)))
        return _INVALID


# --- type hints --------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _split(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """The type under `Annotated` and its markers (outermost last)."""
    markers: tuple[Any, ...] = ()
    while typing.get_origin(hint) is Annotated:
        hint, *extra = typing.get_args(hint)
        markers = (*extra, *markers)
    return hint, markers


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _item_hint(base: Any) -> Any:
    args = typing.get_args(base)
    return args[0] if args else None


def _fits_scalar(kind: type, raw: Any) -> bool:
    if isinstance(raw, bool):
        return kind is bool
    if kind is float:
        return isinstance(raw, int | float)
    return isinstance(raw, kind)


def _fits_shape(hint: Any, raw: Any) -> bool:
    """Whether `raw` has the shape of `hint` (for choosing a union's branch)."""
    base, markers = _split(hint)
    if any(isinstance(m, Parse) for m in markers):
        return not isinstance(raw, Mapping | list)
    if dataclasses.is_dataclass(base) or typing.get_origin(base) is dict:
        return isinstance(raw, Mapping)
    if typing.get_origin(base) is tuple:
        return isinstance(raw, list | tuple)
    if base in _SCALARS:
        return _fits_scalar(base, raw)
    return True


def _fits_runtime(hint: Any, value: Any) -> bool:
    """Whether a loaded `value` came from the branch `hint` (for dumping a union)."""
    base, _ = _split(hint)
    if base is type(None):
        return value is None
    origin = typing.get_origin(base) or base
    return isinstance(origin, type) and isinstance(value, origin)


def _either(options: tuple[Any, ...]) -> str:
    quoted = [repr(option) for option in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
