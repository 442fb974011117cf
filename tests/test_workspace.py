"""rl.open: one call from a configuration file or a run folder to validated data."""

import pandas as pd
import pytest

import retention_lab as rl
from retention_lab.config import dump_config
from retention_lab.data import fingerprint
from retention_lab.errors import ConfigError, DataError, MissingStageOutput
from retention_lab.stage import open_stage

from .conftest import make_config


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "test.yaml"
    dump_config(make_config(), path)
    return path


def test_open_config_gives_validated_tables_as_of_settings_and_truth(config_file):
    data = rl.open(config_file)
    assert data.as_of == data.tables.as_of
    assert data.settings.name == "test" and data.settings.seed == 3
    assert data.settings.survival.horizons_months == [3, 6, 12, 24]
    customers = data.tables.customers
    assert {"tenure_months", "churned"} <= set(customers.columns)
    assert customers["churned"].any() and not customers["churned"].all()
    assert data.truth is not None and data.run_dir is None
    assert data.outputs() == {}
    with pytest.raises(MissingStageOutput, match="run the 'survival' stage"):
        data.output("survival", "scores")


def test_open_config_at_another_snapshot_date_sees_less(config_file):
    data = rl.open(config_file)
    earlier = rl.open(config_file, as_of="2022-06-30")
    assert str(earlier.as_of) == "2022-06-30" and earlier.as_of < data.as_of
    assert len(earlier.tables.customers) < len(data.tables.customers)


def test_open_run_folder_reads_the_stored_tables_and_stage_outputs(tmp_path, config_file):
    stage = open_stage("survival", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    stored = stage.tables()
    dump_config(stage.config, tmp_path / "run" / "config.yaml")
    scores = {"customer_id": ["C1"], "tenure_months": [4.0], "horizon_months": [6.0],
              "p_churn_horizon": [0.25], "expected_remaining_months": [10.0]}  # fmt: skip
    stage.save_table(pd.DataFrame(scores), "scores")

    data = rl.open(tmp_path / "run")
    assert data.run_dir == tmp_path / "run"
    assert fingerprint(data.tables) == fingerprint(stored)
    assert data.truth is not None
    assert data.outputs() == {"survival": ["scores"]}
    assert data.output("survival", "scores")["p_churn_horizon"].tolist() == [0.25]
    with pytest.raises(ConfigError, match="fixed at its snapshot date"):
        rl.open(tmp_path / "run", as_of="2024-01-01")


def test_interactive_stage_folder_opens_like_a_run_and_reloads_when_config_changes(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("retention_lab.stage.DATA_DIR", tmp_path / "data")
    config_file = tmp_path / "mine.yaml"
    dump_config(make_config(name="mine"), config_file)
    stage = open_stage("data", config_file=str(config_file))
    assert stage.run_dir.parent == tmp_path / "data" / "scratch"
    assert stage.run_dir.name.startswith("mine-")  # keyed by what its tables come from
    first = rl.open(stage.run_dir)
    assert first.settings.seed == 3

    dump_config(make_config(name="mine", seed=4), config_file)
    stage = open_stage("data", config_file=str(config_file))
    second = rl.open(stage.run_dir)
    assert second.settings.seed == 4
    assert fingerprint(second.tables) != fingerprint(first.tables)


def test_open_rejects_a_folder_that_is_not_a_run_and_bad_data(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder: it has no config.yaml"):
        rl.open(tmp_path)
    with pytest.raises(ConfigError, match="configuration file not found"):
        rl.open(tmp_path / "missing.yaml")
    (tmp_path / "customers.csv").write_text(
        "customer_id,signup_date,end_date,segment\n"
        "C1,2024-01-01,2023-01-01,mass\nC2,2024-01-01,2024-06-01,mass\n"
    )
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ndata:\n  source: files\n  as_of: 2025-01-01\n"
        "  customers: {path: customers.csv}\n"
    )
    with pytest.raises(DataError, match=r"customers.csv: column 'end_date': 1 row breaks .*\(C1\)"):
        rl.open(tmp_path / "bad.yaml")
