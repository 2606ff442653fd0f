"""A config field declared once: what the command line, the URL and the Explore form need to know of it.

A dataclass field is declared with ``declare(default, help=..., ...)`` in place of its bare default;
``field_specs(RunConfig)`` reads the declarations back as frozen ``FieldSpec`` records, in the
dataclass's order. The CLI's options, the URL's parsing, the form's controls and the config's simple
checks (type and bounds) are all made from these records (no Streamlit, no JAX).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass

REQUIRED = dataclasses.MISSING  # the default of a field that must be given (d, n)
SIDEBAR, MORE = "sidebar", "more"  # the form's groups: the sidebar itself, its "More settings" expander
_METADATA_KEY = "hierpoly"


@dataclass(frozen=True)
class Number:
    """Edited in a number box."""

    step: float | None = None  # None: Streamlit's (1 for a whole number, 0.01 otherwise)
    format: str | None = None  # printf-style, e.g. "%g" for rates that span decades
    placeholder: str | None = None  # shown while the box is empty (a field whose None is derived)


@dataclass(frozen=True)
class Choice:
    """Picked from a list."""

    options: tuple


@dataclass(frozen=True)
class PresetOrText:
    """Picked from named presets, or typed as text after picking `custom` (the list's last entry)."""

    presets: tuple
    custom: str
    text_label: str
    placeholder: str


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the command line, the URL and the form see it."""

    name: str
    type: type  # int, float or str: the value's type when it is given
    default: object  # REQUIRED when the field must be given; None: derived from other fields
    help: str  # what it is, in a line: the option's help and the control's tooltip
    label: str = ""  # the form control's label
    edit: Number | Choice | PresetOrText | None = None  # None: set by its own command, not by hand (transfer's source)
    group: str = SIDEBAR
    only_mode: str | None = None  # the one training mode it applies to (refused, and greyed out, in the others)
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    @property
    def flag(self) -> str:
        """The command-line option: --n-test for n_test."""
        return "--" + self.name.replace("_", "-")

    def problem(self, value) -> str | None:
        """Why `value` cannot be this field's (its type or its bounds), in one line; None when it can."""
        if value is None and self.default is None:
            return None
        if self.type is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{self.name} must be a whole number, got {value!r}"
        if self.type is float and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                   or not math.isfinite(value)):
            return f"{self.name} must be a finite number, got {value!r}"
        if self.type is str:
            return None if isinstance(value, str) else f"{self.name} must be text, got {value!r}"
        return None if self.within_bounds(value) else f"{self.name} must be {self.bounds_text()}, got {value}"

    def within_bounds(self, value) -> bool:
        """Whether a number lies within the declared bounds (none declared: any)."""
        return ((self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                and (self.at_most is None or value <= self.at_most) and (self.below is None or value < self.below))

    def bounds_text(self) -> str:
        """The bounds in words: "at least 1", "positive", "between 0 and 10", "in [0, 1)"."""
        low = self.at_least if self.at_least is not None else self.above
        high = self.at_most if self.at_most is not None else self.below
        if low is not None and high is not None:
            if self.at_least is not None and self.at_most is not None:
                return f"between {number_text(low)} and {number_text(high)}"
            opening, closing = "[" if self.at_least is not None else "(", "]" if self.at_most is not None else ")"
            return f"in {opening}{number_text(low)}, {number_text(high)}{closing}"
        if self.at_least is not None:
            return f"at least {number_text(self.at_least)}"
        if self.above is not None:
            return "positive" if self.above == 0 else f"above {number_text(self.above)}"
        if self.at_most is not None:
            return f"at most {number_text(self.at_most)}"
        return f"below {number_text(self.below)}"


def declare(default=REQUIRED, *, help: str, label: str = "", edit=None, group: str = SIDEBAR,
            only_mode: str | None = None, at_least=None, above=None, at_most=None, below=None):
    """A dataclass field with its default and the rest of its ``FieldSpec`` (the name and type come from the class)."""
    declared = dict(help=help, label=label, edit=edit, group=group, only_mode=only_mode,
                    at_least=at_least, above=above, at_most=at_most, below=below)
    return dataclasses.field(default=default, metadata={_METADATA_KEY: declared})


@functools.cache
def field_specs(config_class) -> tuple[FieldSpec, ...]:
    """Every field's ``FieldSpec``, in the dataclass's order (each field must be declared with ``declare``)."""
    hints = typing.get_type_hints(config_class)
    specs = []
    for field in dataclasses.fields(config_class):
        if _METADATA_KEY not in field.metadata:
            raise TypeError(f"{config_class.__name__}.{field.name} is not declared with fieldspec.declare")
        given = [arg for arg in typing.get_args(hints[field.name]) if arg is not type(None)]  # int | None -> int
        value_type = given[0] if given else hints[field.name]
        specs.append(FieldSpec(field.name, value_type, field.default, **field.metadata[_METADATA_KEY]))
    return tuple(specs)


def field_spec(config_class, name: str) -> FieldSpec:
    """One field's ``FieldSpec``."""
    return next(spec for spec in field_specs(config_class) if spec.name == name)


def number_text(value) -> str:
    """A bound or default as a person reads it: 2^26 = 67108864 for a large power of two, 1e-06, 4096."""
    if isinstance(value, int) and value >= 2**16:
        if value & (value - 1) == 0:
            return f"2^{value.bit_length() - 1} = {value}"
        if value & (value + 1) == 0:
            return f"2^{value.bit_length()} - 1 = {value}"
    return f"{value:g}" if isinstance(value, float) else str(value)
