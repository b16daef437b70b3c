"""One source for every setting: the configs' fields drive the checks, the flags, the widgets and the builder.

No model is needed: these run in the fast tier.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from vlod_core import settings
from vlod_core.cli import GEOMETRY_SETTINGS, RUN_SETTINGS, build_parser
from vlod_core.distill import DistillConfig
from vlod_core.geometry_batch import GeometryConfig
from vlod_core.sampling import SamplingConfig
from vlod_core.steering import REGISTRY, RULES, SteeringConfig, rule_label

ROOT = Path(__file__).resolve().parents[1]
DISTILL = settings.entries(DistillConfig)


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def flags_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions}


def test_every_field_of_the_run_configs_is_declared_once_with_help():
    for config in (DistillConfig, SteeringConfig, SamplingConfig, GeometryConfig):
        declared = settings.entries(config)
        for field in dataclasses.fields(config):
            if not dataclasses.is_dataclass(field.default_factory() if callable(field.default_factory) else None):
                assert field.name in declared, f"{config.__name__}.{field.name} has no setting(...)"
    assert all(entry.about.help for entry in DISTILL.values())
    nested = settings.entries(SteeringConfig) | settings.entries(SamplingConfig)
    assert set(nested) <= set(DISTILL)  # flattened: `gamma`, not `steering.gamma`
    assert DISTILL["max_new_tokens"].default == DistillConfig().sampling.max_new_tokens  # the nested default


@pytest.mark.parametrize("command, names", [("distill", RUN_SETTINGS + ("rule", "seed")), ("compare", RUN_SETTINGS)])
def test_run_flags_agree_with_their_fields(command, names):
    flags = flags_by_dest(subcommand(command))
    for name in names:
        entry, flag = DISTILL[name], flags[name]
        assert entry.flag in flag.option_strings
        assert flag.default == entry.default, name
        if entry.about.choices is not None:
            assert tuple(flag.choices) == tuple(entry.about.choices), name
        assert entry.about.help in flag.help


def test_geometry_and_inspect_flags_agree_with_their_fields():
    flags = flags_by_dest(subcommand("geometry"))
    for name, entry in settings.entries(GeometryConfig).items():
        assert name in GEOMETRY_SETTINGS and flags[name].default == entry.default
    inspect = flags_by_dest(subcommand("inspect"))
    for name in ("temperature", "top_p", "max_new_tokens"):
        assert inspect[name].default == settings.entries(SamplingConfig)[name].default


def test_flags_build_the_config_they_name():
    args = build_parser().parse_args(
        ["distill", "--steering", "vgs", "--gamma", "1.5", "--eta", "0.41", "--lora", "4", "--max-new-tokens", "9"]
    )
    from vlod_core.cli import _distill_config

    config = _distill_config(args, args.rule, args.seed)
    assert config.steering == SteeringConfig(rule="vgs", gamma=1.5, eta=0.41)
    assert config.lora_rank == 4 and config.sampling.max_new_tokens == 9


# The two VDS quantiles are also checked against each other, so their range's ends are not valid alone.
RANGED = [n for n, e in DISTILL.items() if e.kind in (int, float) and e.about.high is not None and "quantile" not in n]


@pytest.mark.parametrize("name", RANGED)
def test_each_range_is_enforced_at_its_ends(name):
    entry = DISTILL[name]
    low, high = entry.kind(entry.about.low), entry.kind(entry.about.high)
    settings.build(DistillConfig, {name: high, **({"batch": high} if name == "samples_per_prompt" else {})})
    settings.build(DistillConfig, {name: low})
    beyond = high * 2 if high > 0 else 1
    with pytest.raises(ValueError, match=name):
        settings.build(DistillConfig, {name: beyond})


def test_build_refuses_an_unknown_name_and_coerces_form_values():
    with pytest.raises(ValueError, match="unknown setting 'gama'"):
        settings.build(DistillConfig, {"gama": 1.0})
    config = settings.build(DistillConfig, {"steps": 30.0, "lr": "3e-4", "eta": "auto"})
    assert config.steps == 30 and isinstance(config.steps, int) and config.lr == 3e-4
    with pytest.raises(ValueError, match="steps must be a whole number"):
        settings.build(DistillConfig, {"steps": 2.5})
    assert settings.flat(config)["steps"] == 30


def test_widget_arguments_come_from_the_field():
    gamma = settings.widget(SteeringConfig, "gamma")
    about = settings.entries(SteeringConfig)["gamma"].about
    assert (gamma["min_value"], gamma["max_value"], gamma["step"], gamma["value"]) == (
        about.low,
        about.high,
        about.step,
        2.0,
    )
    ablation = settings.widget(DistillConfig, "ablation", "blur")
    assert ablation["options"][ablation["index"]] == "blur"


def test_the_rules_come_from_one_registry():
    assert RULES == tuple(REGISTRY)
    assert tuple(flags_by_dest(subcommand("distill"))["rule"].choices) == RULES
    for rule in RULES:
        config = SteeringConfig(rule=rule)
        assert config.steering_term == REGISTRY[rule].steering_term
        assert (config.effective_lam > 0) == (REGISTRY[rule].preserved_term is not None)
        assert rule in rule_label(rule) and REGISTRY[rule].objective in rule_label(rule)


def test_the_readme_shows_the_registry_as_the_rules_command_prints_it(capsys):
    from vlod_core.cli import main

    assert main(["rules"]) == 0
    table = capsys.readouterr().out
    assert all(f"| `{rule}` | {REGISTRY[rule].objective} |" in table for rule in RULES)
    assert table in (ROOT / "README.md").read_text()


def test_app_form_settings_are_config_fields_with_the_apps_defaults():
    from vlod_app.jobs import APP_DEFAULTS, DEFAULT_SETTINGS, FORM_SETTINGS, distill_configs

    for name in FORM_SETTINGS:
        assert DEFAULT_SETTINGS[name] == APP_DEFAULTS.get(name, DISTILL[name].default)
    configs = distill_configs(DEFAULT_SETTINGS)
    assert set(configs) == set(DEFAULT_SETTINGS["rules"])
    assert all(settings.flat(c)[n] == DEFAULT_SETTINGS[n] for c in configs.values() for n in FORM_SETTINGS)


@pytest.mark.parametrize("command", ["inspect", "geometry", "distill", "compare", "evaluate", "experiments"])
def test_a_world_brings_its_pair_and_the_settings_its_answers_need(command):
    from vlod_core.cli import _use_world
    from vlod_core.toy import TOY_REASONING
    from vlod_core.toy.source import world_settings

    required = {"inspect": ["--image", "x.png", "--question", "q"]}.get(command, [])
    parser = build_parser()
    args = parser.parse_args([command, *required, "--world", "reasoning"])
    _use_world(args, parser)
    assert (args.teacher, args.student) == (TOY_REASONING, TOY_REASONING)
    wanted = world_settings("reasoning")
    assert wanted["answer_pattern"] == "boxed" and wanted["max_new_tokens"] >= 44  # the longest chain fits
    for name, value in wanted.items():
        if hasattr(args, name):
            assert getattr(args, name) == value, name
    explicit = parser.parse_args([command, *required, "--world", "reasoning", "--teacher", "/my/teacher"])
    if hasattr(explicit, "max_new_tokens"):
        explicit = parser.parse_args(
            [command, *required, "--world", "reasoning", "--teacher", "/my/teacher", "--max-new-tokens", "80"]
        )
    _use_world(explicit, parser)
    assert explicit.teacher == "/my/teacher" and explicit.student == TOY_REASONING
    assert getattr(explicit, "max_new_tokens", 80) == 80  # what the command line says wins
