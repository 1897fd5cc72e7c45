"""The template filter decides on a seed's split (template_filter.instances), not on the test answers."""
import copy
import json

import pandas as pd
import pytest

from cca.cli import main
from cca.cli.generation import BaseAccuracySettings
from cca.config import ROOT, load_config, model_settings
from cca.errors import CCAError
from cca.traces.build import base_accuracy

# (instance, split, greedy correct): "a" is wrong on train and right on test, "b" the other way round,
# "c" has only a test instance; b#5 is in no split.
ROWS = [("a#0", "train", False), ("a#1", "train", False), ("a#2", "val", True),
        ("a#3", "test", True), ("a#4", "test", True), ("a#5", "test", True),
        ("b#0", "train", True), ("b#1", "train", True), ("b#2", "val", False),
        ("b#3", "test", False), ("b#4", "test", False), ("b#5", None, False),
        ("c#0", "test", False)]


@pytest.fixture
def tables():
    greedy = pd.DataFrame([{"instance_id": i, "template_id": i[0], "correct": ok, "error": None}
                           for i, _, ok in ROWS])
    split = pd.DataFrame([{"instance_id": i, "template_id": i[0], "split": s} for i, s, _ in ROWS if s])
    return greedy, split


def eligible(acc):
    return set(acc.loc[acc["train_eligible"], "template_id"])


def test_train_decides_on_train_instances_only(tables):
    acc = base_accuracy(*tables, "train", 0.5).set_index("template_id")
    assert eligible(acc.reset_index()) == {"a"}
    assert acc.loc["a", "accuracy"] == 0 and acc.loc["a", "n"] == 2
    assert acc.loc["b", "accuracy"] == 1
    assert "c" not in acc.index   # no train instance: never eligible


def test_all_reads_every_instance_test_included(tables):
    acc = base_accuracy(*tables, "all", 0.5).set_index("template_id")
    assert eligible(acc.reset_index()) == {"b", "c"}
    assert acc.loc["a", "accuracy"] == pytest.approx(4 / 6) and acc.loc["b", "n"] == 6   # b#5 (no split) too


def test_train_and_val(tables):
    acc = base_accuracy(*tables, "train+val", 0.5).set_index("template_id")
    assert eligible(acc.reset_index()) == {"a"}
    assert acc.loc["a", "accuracy"] == pytest.approx(1 / 3) and acc.loc["b", "accuracy"] == pytest.approx(2 / 3)


def test_errored_traces_are_counted_as_errors_not_answers(tables):
    greedy, split = tables
    greedy.loc[greedy["instance_id"] == "a#0", "error"] = "boom"
    acc = base_accuracy(greedy, split, "train", 0.5).set_index("template_id")
    assert acc.loc["a", "n"] == 1 and acc.loc["a", "errors"] == 1


def test_unknown_choice_is_refused(tables):
    with pytest.raises(CCAError, match="template_filter.instances"):
        base_accuracy(*tables, "test", 0.5)


def test_command_takes_the_choice_from_settings_and_the_schema_default(tables, tmp_path):
    greedy, split = tables
    greedy.to_parquet(tmp_path / "greedy.parquet")
    split.to_parquet(tmp_path / "split.parquet")

    def run(template_filter):
        out = tmp_path / "acc.parquet"
        main(["traces", "accuracy", "--greedy", str(tmp_path / "greedy.parquet"), "--splits",
              str(tmp_path / "split.parquet"), "--settings", json.dumps({"template_filter": template_filter}),
              "--out", str(out)])
        return eligible(pd.read_parquet(out))

    assert run({"max_base_accuracy": 0.5}) == {"a"}   # absent: the schema's default, train
    assert run({"max_base_accuracy": 0.5, "instances": "all"}) == {"b", "c"}


def test_stage_settings_carry_the_config_choice():
    config = load_config(ROOT / "config.yaml")
    model = next(iter(config["models"]))
    assert BaseAccuracySettings.from_model(model_settings(config, model)).template_filter.instances == "train"
    cfg = copy.deepcopy(config)
    cfg["models"][model]["overrides"] = {"template_filter": {"instances": "all"}}
    st = BaseAccuracySettings.from_model(model_settings(cfg, model))
    assert json.loads(st.to_json())["template_filter"]["instances"] == "all"
