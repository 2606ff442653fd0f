"""Run configs in URLs and forms (no Streamlit, no JAX).

- URL query parameters <-> run configs: ``params_from_config`` writes the
  smallest set of parameters that rebuilds the same config (same ``key()``);
  ``values_from_params`` reads them back, one error per bad parameter.
- The values a form starts from: ``form_values`` (the URL's, the rest from
  ``RunConfig``'s own defaults; a start config when the URL has none).
- The form's controls, from RunConfig's declaration (fieldspec.py): ``form_groups``.
- Form validation with the error attached to the control that caused it:
  ``build_config``.
- Shareable links: ``share_url`` and the classroom link's base, ``classroom_base``, from the
  address the server listens on (``SERVE_COMMAND`` serves a class).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from hierpoly.config import ConfigError, RunConfig
from hierpoly.fieldspec import MORE, SIDEBAR, Choice, FieldSpec, PresetOrText, field_spec, field_specs
from hierpoly.targets import TargetError, link_name

FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
# fields picked from a list, and the values the form offers
CHOICES = {spec.name: spec.edit.options for spec in field_specs(RunConfig) if isinstance(spec.edit, Choice)}
# The Explore form's order: RunConfig's own field order stays (the URL's parameters follow it), the form's
# groups fields by topic. A field not listed here goes last in its group.
FORM_ORDER = ("d", "n", "k", "link", "mode", "sigma1", "m1", "m2", "steps", "lr", "seed",
              "n_test", "n_eval", "weight_decay", "steps2", "lr2", "weight_decay2", "b_scale",
              "tol", "patience", "lr_drops", "lr_decay", "feature_tol", "arch")
LOCK_PARAM = "lock"  # ?lock=1: the classroom link, controls pre-filled and locked
MAX_SEED = field_spec(RunConfig, "seed").at_most  # JAX keys take 32 bits
MAX_WHOLE = 2**53  # a whole number a browser's number box holds exactly; larger ones are refused where they enter
MAX_LIST_VALUE = 1e12  # a grid's d, n or multiple of d^k: larger ones overflow n = multiple · d^k
# A config every single field is checked against, to tell which control an error belongs to.
_PROBE = {"d": 4, "n": 256}


# ------------------------------------------------------------- query params
def params_from_config(cfg: RunConfig) -> dict[str, str]:
    """The fewest query parameters that rebuild `cfg` exactly (d and n always; the rest when not default)."""
    params = {name: value for name, value in cfg.to_dict().items() if value is not None}
    for name in FIELDS:
        if name in ("d", "n") or name not in params:
            continue
        trial = {key: value for key, value in params.items() if key != name}
        try:
            if RunConfig(**trial).key() == cfg.key():
                params = trial
        except ConfigError:
            pass
    if "link" in params:  # a std: preset stays std:NAME: it means the same target at every d
        params["link"] = link_name(params["link"], cfg.d)
    return {name: _format(params[name]) for name in FIELDS if name in params}


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class ParsedParams:
    """Config values read from a URL, the per-parameter errors, and the classroom lock."""

    values: dict  # field -> typed value, only the parameters present and readable
    errors: dict  # field -> one-line message
    locked: bool


def values_from_params(params: Mapping[str, str | Sequence[str]], config=RunConfig) -> ParsedParams:
    """Typed values of `config`'s fields from query parameters; unknown parameters are ignored."""
    values, errors = {}, {}
    for spec in field_specs(config):
        if spec.name not in params:
            continue
        raw = params[spec.name]
        text = (raw[-1] if raw else "") if isinstance(raw, (list, tuple)) else str(raw)
        text = text.strip()
        try:
            values[spec.name] = _parse(spec, text)
        except ValueError as err:
            errors[spec.name] = str(err)
    lock = params.get(LOCK_PARAM, "")
    lock = lock[-1] if isinstance(lock, (list, tuple)) and lock else lock
    return ParsedParams(values, errors, str(lock).strip().lower() in ("1", "true", "yes"))


def _parse(spec: FieldSpec, text: str):
    name = spec.name
    if spec.type is int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {text!r} in the link") from None
        if abs(value) > MAX_WHOLE:
            raise ValueError(f"{name} = {text[:24]}{'…' if len(text) > 24 else ''} in the link is too large")
        return value
    if spec.type is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {text!r} in the link") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {text!r} in the link")
        return value
    return text


def url_query(params: Mapping[str, str]) -> str:
    """`?a=1&b=2` for a shared link, URL-encoded."""
    return "?" + urlencode(dict(params)) if params else ""


# ------------------------------------------------------------ starting values
def form_values(url_values: Mapping, start: RunConfig) -> tuple[dict, dict]:
    """Every field's starting value for the form, and why any URL value was dropped.

    With no config values in the URL the form starts at ``start``; otherwise a field
    the URL leaves out takes ``RunConfig``'s default, as ``params_from_config`` left
    it out for being the default. Fields whose value is derived from others (the
    widths, step caps and rates that default to None) start empty when they equal
    what would be derived. A choice outside its list falls back, with the reason.
    """
    if url_values:
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
        base = {**defaults, "d": start.d, "n": start.n}
    else:
        base = {**start.to_dict(), **{name: None for name in derived_fields(start)}}
    values = {**base, **url_values}
    dropped = {}
    for name, options in CHOICES.items():
        if values[name] not in options:
            dropped[name] = field_error(name, values[name]) or f"{values[name]!r} is not one of {options}"
            values[name] = base[name] if base[name] in options else options[0]
    return values, dropped


def derived_fields(cfg: RunConfig) -> list[str]:
    """Fields left to their derived default (None in RunConfig) that the config has not overridden."""
    out = []
    for field in dataclasses.fields(RunConfig):
        if field.default is None:
            try:
                if dataclasses.replace(cfg, **{field.name: None}).key() == cfg.key():
                    out.append(field.name)
            except ConfigError:
                pass
    return out


# ------------------------------------------------------------------ the form's controls
def form_groups(config=RunConfig) -> dict[str, tuple[FieldSpec, ...]]:
    """The fields the Explore form edits, in the order shown: the sidebar's, then "More settings"."""
    def place(spec: FieldSpec) -> int:
        return FORM_ORDER.index(spec.name) if spec.name in FORM_ORDER else len(FORM_ORDER)

    edited = sorted((spec for spec in field_specs(config) if spec.edit is not None), key=place)  # stable
    return {group: tuple(spec for spec in edited if spec.group == group) for group in (SIDEBAR, MORE)}


def preset_or_text(edit: PresetOrText, value: str) -> tuple[str, str]:
    """The list's entry and the text box's content that show `value`: a preset by name, anything else as text."""
    name = str(value).strip().lower()
    return (name, "") if name in edit.presets else (edit.custom, value)


# ---------------------------------------------------------------- shared links
def share_url(base: str, page: str, params: Mapping[str, str]) -> str:
    """The whole link to a page with its query: base 'http://host:8501', page 'Explore'."""
    return f"{base.rstrip('/')}/{page}{url_query(params)}"


SERVE_COMMAND = "HIERPOLY_MODE=classroom streamlit run app.py --server.address 0.0.0.0"  # the one way to serve a class
ALL_INTERFACES = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class ClassroomBase:
    """The base URL of a classroom link, where it came from, and whether students can reach it."""

    base: str
    source: str
    reachable: bool  # False: the server listens on loopback only, or no network address is known


def serve_command(port: int = 8501) -> str:
    """The command that serves this app to a class on `port`."""
    return SERVE_COMMAND + (f" --server.port {port}" if port != 8501 else "")


def listens_on_loopback_only(server_address: str | None) -> bool:
    """Whether Streamlit's server.address keeps the app on this machine (127.0.0.1, ::1, localhost)."""
    address = (server_address or "").strip().strip("[]")
    return address not in ALL_INTERFACES and _loopback(address)


def classroom_base(teacher_base: str, browser_url: str, server_address: str | None, server_ip: str | None,
                   port: int) -> ClassroomBase:
    """The base URL students open, from the address the server actually serves.

    The teacher's own base wins (a proxy, a name). A server listening on loopback only
    can be reached from this machine alone: the link says so (``reachable`` False). One
    bound to a network address is reached there; one listening on every interface at
    the browser's address unless that is a loopback one (a teacher on localhost would
    hand out 127.0.0.1), else at this machine's network address.
    Raises ValueError for a base that is not an http(s) URL.
    """
    teacher_base = (teacher_base or "").strip()
    if teacher_base:
        parts = urlsplit(teacher_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the base URL must look like http://host:port, got {teacher_base!r}")
        return ClassroomBase(teacher_base.rstrip("/"), "the base URL you set", True)
    parts = urlsplit(browser_url or "")
    path = parts.path.rsplit("/", 1)[0] if parts.path.count("/") > 1 else ""
    address = (server_address or "").strip().strip("[]")
    if listens_on_loopback_only(address):
        here = f"{parts.scheme}://{parts.netloc}{path}" if parts.hostname else f"http://localhost:{port}{path}"
        return ClassroomBase(here, f"this machine only: the server listens on {address}", False)
    if address not in ALL_INTERFACES:
        host = f"[{address}]" if ":" in address else address
        return ClassroomBase(f"http://{host}:{port}{path}", f"the address the server listens on ({address})", True)
    if parts.hostname and not _loopback(parts.hostname):
        return ClassroomBase(f"{parts.scheme}://{parts.netloc}{path}", "the address in your browser", True)
    if server_ip and not _loopback(server_ip):
        return ClassroomBase(f"http://{server_ip}:{port}{path}", "this server's network address", True)
    return ClassroomBase(f"http://localhost:{port}{path}", "this machine only: no network address was found", False)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ the form
@dataclass(frozen=True)
class FormCheck:
    """A config when the form is valid; otherwise errors keyed by control ("" for the whole form)."""

    config: RunConfig | None
    errors: dict
    warnings: tuple


def build_config(values: Mapping) -> FormCheck:
    """Validate form values (None = the mode's default) and attach each error to its control.

    Each field is first checked alone against a small valid config, so a message
    lands next to the control that caused it; rules that tie fields together
    (e.g. layer-wise needs n ≥ 4) are reported for the whole form.
    """
    values = {name: value for name, value in values.items() if value is not None and value != ""}
    errors = {name: msg for name, value in values.items() if (msg := field_error(name, value))}
    if errors:
        return FormCheck(None, errors, ())
    try:
        cfg = RunConfig(**values)
    except (ConfigError, TargetError) as err:
        return FormCheck(None, {"": str(err)}, ())
    return FormCheck(cfg, {}, tuple(cfg.warnings()))


def field_error(name: str, value) -> str | None:
    """Why one control's value cannot be used (checked alone against a small valid config), or None."""
    if value is None or value == "":
        return None
    if name not in FIELDS:
        return f"unknown setting {name!r}"
    only_mode = field_spec(RunConfig, name).only_mode  # checked in the mode where the field exists
    try:
        RunConfig(**{**_PROBE, **({"mode": only_mode} if only_mode else {}), name: value})
    except (ConfigError, TargetError) as err:
        return str(err)
    except TypeError as err:  # a value of the wrong kind
        return f"{name}: {err}"
    return None


def parse_number_list(text: str, what: str, integer: bool = True) -> tuple:
    """'8, 12, 16' -> (8, 12, 16); a clear ValueError for anything else (never evaluated)."""
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if not parts:
        raise ValueError(f"{what}: give at least one number, separated by commas")
    out = []
    for part in parts:
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            kind = "whole numbers" if integer else "numbers"
            raise ValueError(f"{what}: {part!r} is not a number; give {kind} separated by commas") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what}: {part!r} must be positive")
        if value > MAX_LIST_VALUE:
            raise ValueError(f"{what}: {part!r} is too large (at most {MAX_LIST_VALUE:g})")
        out.append(value)
    return tuple(out)


def run_label(cfg: RunConfig) -> str:
    """A short human label for a run: d, n, k, mode, seed."""
    return f"d={cfg.d} n={cfg.n} k={cfg.k} {link_name(cfg.link, cfg.d)} {cfg.mode} seed={cfg.seed}"
