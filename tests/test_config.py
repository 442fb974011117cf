import pytest

from retention_lab.config import (
    DEFAULT_CONFIG,
    artifact_root_for,
    dump_config,
    flatten,
    load_config,
    parse_config,
)
from retention_lab.errors import ConfigError


def test_demo_config_is_valid_and_simulates_about_50000_customers():
    config = load_config(DEFAULT_CONFIG)
    assert config.name == "demo"
    assert config.data.source == "simulator"
    assert 40_000 <= config.data.simulator.n_customers <= 60_000
    assert config.stages[0] == "data"


def test_every_bundled_config_is_valid():
    for path in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):
        load_config(path)


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata:\n  simulator:\n    n_customer: 10\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: data.simulator.n_customer: unknown key"):
        load_config(path)


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"seed: .*integer.*'many'"):
        parse_config({"name": "x", "seed": "many"}, file="c.yaml")


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "x", "seed": -1, "colour": "red"}, file="c.yaml")
    keys = [key for key, _ in info.value.problems]
    assert sorted(keys) == ["colour", "seed"]
    assert "2 problems" in str(info.value)


def test_missing_name_and_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="name: Field required"):
        parse_config({}, file="c.yaml")
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_name_must_be_usable_in_a_folder_name():
    with pytest.raises(ConfigError, match="name"):
        parse_config({"name": "../escape"}, file="c.yaml")


def test_dump_then_load_gives_the_same_configuration(tmp_path):
    config = parse_config({"name": "x", "seed": 5, "data": {"simulator": {"n_customers": 99}}})
    dump_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_flatten_gives_dotted_string_parameters():
    flat = flatten(parse_config({"name": "x", "data": {"simulator": {"n_customers": 99}}}))
    assert flat["data.simulator.n_customers"] == "99"
    assert flat["name"] == "x"
    assert all(isinstance(v, str) for v in flat.values())


def test_tracking_uri_defaults_to_environment_then_local_sqlite(monkeypatch):
    config = parse_config({"name": "x"})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert config.resolved_tracking_uri().startswith("sqlite:///")
    assert config.resolved_tracking_uri().endswith("mlruns/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert config.resolved_tracking_uri() == "http://127.0.0.1:5000"
    assert artifact_root_for("http://127.0.0.1:5000") is None
    assert artifact_root_for("sqlite:////x/mlruns/mlflow.db") == "file:///x/mlruns/artifacts"


def test_a_smoke_run_shrinks_each_stage_through_its_settings_fast_variant():
    config = parse_config(
        {
            "name": "x",
            "plan": {"bootstrap": 500},
            "clv": {"transaction_models": ["pareto_nbd", "bg_nbd"]},
        }
    )
    assert config.stage_settings("plan").bootstrap == 500  # as configured
    shrunk = config.stage_settings("plan", fast=True)
    assert (shrunk.bootstrap, shrunk.budget_curve_points) == (30, 6)
    assert shrunk.budget == config.plan.budget  # what a smoke run does not shrink is kept
    assert config.stage_settings("clv", fast=True).transaction_models == ["pareto_nbd"]
    assert config.stage_settings("uplift", fast=True).folds == 2
    assert config.stage_settings("monitoring", fast=True) == config.monitor  # nothing to shrink
