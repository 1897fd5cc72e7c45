import copy
import time

import pytest
import yaml

from cca.config import ROOT, load_config, model_settings, validate_config
from cca.errors import CCAError


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "config.yaml")


def test_shipped_config_is_valid(config):
    assert "gemma-3-270m" in config["models"]
    assert set(config["profiles"]) >= {"paper", "small"}


def test_paper_profile_has_the_papers_settings(config):
    p = config["profiles"]["paper"]
    assert p["splits"] == {"train": 26, "val": 4, "test": 20}
    assert p["instances"]["per_template"] == 50
    assert p["seeds"] == [0, 1, 2]
    assert p["template_filter"]["max_base_accuracy"] == 0.8
    assert p["sampling"]["num_samples"] == 10
    assert p["dcm"]["lambdas"] == [1e-2, 5e-3, 1e-3, 1e-4]
    assert (p["dcm"]["lr"], p["dcm"]["epochs"], p["dcm"]["batch_size"]) == (5e-3, 50, 8)
    assert (p["dcm"]["lr_step_size"], p["dcm"]["lr_gamma"]) == (5, 0.9)
    assert p["update"]["lrs"] == [1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 5e-5, 1e-5]
    assert p["update"]["steps"] == 50
    assert p["update"]["eval_steps"] == [2, 4, 6, 8, 10, 20, 30, 40, 50]
    assert (p["lora"]["r"], p["lora"]["alpha"], p["lora"]["dropout"], p["lora"]["epochs"]) == (16, 32, 0.1, 2)


def test_model_settings_merge_overrides(config):
    cfg = copy.deepcopy(config)
    cfg["models"]["gemma-3-270m"]["overrides"] = {"dcm": {"lambdas": [0.5]}}
    s = model_settings(cfg, "gemma-3-270m")
    assert s["dcm"]["lambdas"] == [0.5]
    assert s["dcm"]["lr"] == cfg["profiles"]["small"]["dcm"]["lr"]
    assert s["task_config"]["templates"].endswith("gsm-mini/templates")


def _broken(config, mutate):
    cfg = copy.deepcopy(config)
    mutate(cfg)
    return cfg


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["profiles"]["small"].update(seedz=[0]), r"profiles\.small: unknown key .*seedz"),
    (lambda c: c["profiles"]["small"].update(seeds=["a"]), r"profiles\.small\.seeds\[0\]: 'a' is not of type"),
    (lambda c: c["profiles"]["small"]["dcm"].update(lambdas=[-1.0]), r"profiles\.small\.dcm\.lambdas\[0\]"),
    (lambda c: c["profiles"]["small"]["generation"].update(backend="tgi"), r"generation\.backend"),
    (lambda c: c["models"]["gemma-3-270m"].update(profile="nope"), r"models\.gemma-3-270m\.profile.*nope"),
    (lambda c: c["profiles"]["small"].update(task="gsm-huge"), r"profiles\.small\.task.*gsm-huge"),
    (lambda c: c["profiles"]["small"]["splits"].update(train=49), r"splits.*exceeds"),
    (lambda c: c["models"]["gemma-3-270m"].update(overrides={"dcm": {"epochs": 0}}),
     r"models\.gemma-3-270m\.overrides.*dcm\.epochs"),
    # JSON Schema counts 5.0 as an integer; the workflow needs an int
    (lambda c: c["profiles"]["small"]["dcm"].update(epochs=5.0), r"profiles\.small\.dcm\.epochs: 5\.0 is not of type 'integer'"),
    (lambda c: c["profiles"]["small"]["dcm"].update(lr=float("nan")), r"profiles\.small\.dcm\.lr: nan is not a finite number"),
    (lambda c: c["profiles"]["small"]["template_filter"].update(max_base_accuracy=float("inf")),
     r"template_filter\.max_base_accuracy: inf is not a finite number"),
    (lambda c: c["models"].update({5: {"profile": "small"}}), r"models: 5 is not of type 'string'"),
    # a task named by a number used to end in a TypeError while listing the tasks
    (lambda c: (c["tasks"].update({7: c["tasks"]["gsm-mini"]}), c["profiles"]["small"].update(task="gsm-huge")),
     r"profiles\.small\.task: no task named 'gsm-huge' \(tasks: gsm-symbolic, gsm-mini, gsm8k-test, 7\)"),
    (lambda c: c.update(extra=_nested(60)), r"extra(\[0\]){49}: nested more than 50 levels deep"),
])
def test_bad_config_names_the_key(config, mutate, message):
    with pytest.raises(CCAError, match=message):
        validate_config(_broken(config, mutate))


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def test_unknown_model_is_refused(config):
    with pytest.raises(CCAError, match="unknown model 'gpt-5'"):
        model_settings(config, "gpt-5")


def test_invalid_yaml_is_reported(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(CCAError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("text,message", [
    (b"models: [\n", "not valid YAML"),
    (b"models: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    (b"models: \xff\xfe\n", "not UTF-8 text"),  # was a UnicodeDecodeError
    (b"extra: " + b"[" * 1000 + b"]" * 1000 + b"\n", "nested too deeply"),  # was a RecursionError
])
def test_unreadable_config_files_are_reported(tmp_path, text, message):
    bad = tmp_path / "config.yaml"
    bad.write_bytes(text)
    with pytest.raises(CCAError, match=message):
        load_config(bad)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    # nine levels of nine aliases stand for 9**9 (387 million) strings in lora.targets
    lines = ["a0: &a0 q_proj"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = (ROOT / "config.yaml").read_text().replace("targets: [q_proj, k_proj", "targets: [*a9, k_proj", 1)
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n" + text)
    start = time.perf_counter()
    with pytest.raises(CCAError, match=r"more than 100000 values once YAML aliases are expanded"):
        load_config(path)
    assert time.perf_counter() - start < 10


def test_snakemake_schema_is_the_same_file():
    text = (ROOT / "workflow" / "Snakefile").read_text()
    assert 'validate(config, "schemas/config.schema.yaml")' in text
    yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
