"""What every command shares: one-line failures, argument types, config options, the shipped bundles."""
from __future__ import annotations

import argparse
import math
import sys

from hierpoly.config import RunConfig
from hierpoly.fieldspec import REQUIRED, Choice, FieldSpec, PresetOrText, field_spec, field_specs, number_text
from hierpoly.results.codec import StoreError


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


MAX_SEED = field_spec(RunConfig, "seed").at_most  # JAX keys take 32 bits


MAX_MULTIPLE = 1e6  # n = multiple · d^k: larger multiples are no grid anyone runs, and overflow at 1e308


def whole_number(low: int, high: int | None = None, what: str = "", bounds: str | None = None):
    """An argparse type: a whole number in [low, high] (no upper bound: None), refused in one line otherwise;
    ``bounds`` says the range in words where the bare numbers would not."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            told = bounds or (f"at least {low}" if high is None else f"from {low} to {high}")
            raise argparse.ArgumentTypeError(f"{what}must be {told}, got {text[:24]}")
        return value

    return parse


parse_seed = whole_number(0, MAX_SEED, "seed ", f"from 0 to 2^31 - 1 = {MAX_SEED} (JAX keys take 32 bits)")


parse_count = whole_number(1, 1000)  # seeds per cell


parse_sample_rows = whole_number(1)  # scatter points kept per run in a bundle


def parse_multiple(text: str) -> float:
    """A multiple of d^k: a finite number in (0, MAX_MULTIPLE]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a multiple of d^k must be a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_MULTIPLE):
        raise argparse.ArgumentTypeError(f"a multiple of d^k must be a finite number in (0, {MAX_MULTIPLE:g}], "
                                         f"got {text[:24]}")
    return value


def option_help(spec: FieldSpec) -> str:
    """A config option's help: the field's own, its choices, its default (argparse %-formats it)."""
    text = spec.help
    if isinstance(spec.edit, Choice):
        text += f"; one of {', '.join(map(str, spec.edit.options))}"
    if isinstance(spec.edit, PresetOrText):
        text += f"; presets: {', '.join(spec.edit.presets)}"
    if spec.default is not None and spec.default is not REQUIRED:
        text += f" (default {number_text(spec.default)})"
    return text.replace("%", "%%")


_OPTION_TYPE = {"seed": parse_seed}  # run's --seed refused in the words of every other command's


def add_config_args(p: argparse.ArgumentParser, config=RunConfig) -> None:
    """One option per field of `config` set by hand: --name-with-dashes, its type, its help and default."""
    for spec in field_specs(config):
        if spec.edit is not None:  # None: set by its own command (transfer's --from)
            p.add_argument(spec.flag, type=_OPTION_TYPE.get(spec.name, spec.type), required=spec.default is REQUIRED,
                           default=None, help=option_help(spec))


def config_from_args(args, config=RunConfig) -> RunConfig:
    """The config of the options given (an unset option takes the config's default)."""
    given = {spec.name: getattr(args, spec.name) for spec in field_specs(config) if spec.edit is not None}
    return config(**{name: value for name, value in given.items() if value is not None})


def load_precomputed(store) -> None:
    """Import shipped bundles on first start; a bad one is a warning, not a failure."""
    from hierpoly.results import bundles

    try:
        bundles.load_precomputed(store)
    except (bundles.BundleError, StoreError) as err:  # a full disk too: what is stored still serves
        print(f"warning: precomputed results not loaded: {err}", file=sys.stderr)


def print_notes(store) -> None:
    """What a listing of the store skipped, one line each, on stderr."""
    for note in store.notes():
        print(f"note: {note}", file=sys.stderr)

