"""One declaration per config field: a field declared in one place reaches the command line, the URL and the form."""
import dataclasses

import pytest

from hierpoly import cli
from hierpoly.config import ConfigError, RunConfig
from hierpoly.fieldspec import MORE, SIDEBAR, Number, declare, field_specs, number_text
from hierpoly.views import forms

# RunConfig with one more field: its declaration below is the only place it is written.
MOMENTUM = declare(0.9, help="heavy-ball momentum of the first block", label="momentum β",
                   edit=Number(step=0.05, format="%g"), group=MORE, at_least=0, below=1)
Extended = dataclasses.make_dataclass("Extended", [("momentum", float, MOMENTUM)], bases=(RunConfig,), frozen=True)


def test_a_declared_field_is_an_option_of_run(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser(Extended).parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--momentum MOMENTUM heavy-ball momentum of the first block (default 0.9)" in help_text
    parser = cli.build_parser(Extended)
    given = cli.config_from_args(parser.parse_args(["run", "--d", "4", "--n", "64", "--momentum", "0.5"]), Extended)
    unset = cli.config_from_args(parser.parse_args(["run", "--d", "4", "--n", "64"]), Extended)
    assert (given.momentum, unset.momentum) == (0.5, 0.9)


def test_a_declared_field_is_a_control_of_the_explore_form():
    groups = forms.form_groups(Extended)
    assert groups[MORE][-1].name == "momentum" and groups[MORE][-1].label == "momentum β"
    shown = [spec.name for spec in groups[SIDEBAR] + groups[MORE]]
    assert shown == [*forms.FORM_ORDER, "momentum"]  # RunConfig's own fields keep the form's order


def test_a_declared_field_is_read_from_the_url_with_its_type():
    parsed = forms.values_from_params({"d": "4", "n": "64", "momentum": "0.5"}, Extended)
    assert parsed.values == {"d": 4, "n": 64, "momentum": 0.5} and isinstance(parsed.values["momentum"], float)
    assert "momentum must be a number" in forms.values_from_params({"momentum": "fast"}, Extended).errors["momentum"]


def test_a_declared_fields_type_and_bounds_are_checked():
    assert Extended(d=4, n=64, momentum=0).momentum == 0.0  # a float field: 0 and 0.0 are one key
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\), got 1.5"):
        Extended(d=4, n=64, momentum=1.5)
    with pytest.raises(ConfigError, match="momentum must be a finite number"):
        Extended(d=4, n=64, momentum=float("nan"))


def test_every_field_is_declared_and_an_undeclared_one_is_refused():
    assert [spec.name for spec in field_specs(RunConfig)] == [f.name for f in dataclasses.fields(RunConfig)]
    assert {spec.name for spec in field_specs(RunConfig) if spec.type is int} == {
        "d", "n", "k", "m1", "m2", "steps", "steps2", "patience", "lr_drops", "seed", "n_test", "n_eval"}
    bare = dataclasses.make_dataclass("Bare", [("momentum", float, 0.9)], bases=(RunConfig,), frozen=True)
    with pytest.raises(TypeError, match="Bare.momentum is not declared"):
        field_specs(bare)


def test_bounds_and_defaults_read_as_a_person_writes_them():
    specs = {spec.name: spec for spec in field_specs(RunConfig)}
    texts = {name: specs[name].bounds_text() for name in ("n", "lr", "lr_drops", "lr_decay", "tol", "n_eval", "seed")}
    assert texts == {"n": "at least 2", "lr": "positive", "lr_drops": "between 0 and 10", "lr_decay": "in (0, 1]",
                     "tol": "in [0, 1)", "n_eval": "between 16 and 2^26 = 67108864",
                     "seed": "between 0 and 2^31 - 1 = 2147483647"}
    assert (number_text(1e-6), number_text(4096), number_text(2**20)) == ("1e-06", "4096", "2^20 = 1048576")
