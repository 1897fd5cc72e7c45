"""The `cca` command's bad-input behaviour: one line naming the thing, exit 2, nothing half-written."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from cca.config import ROOT

MINI = ROOT / "resources" / "gsm-mini" / "templates"
TASK = {"templates": str(MINI), "exemplars": {"file": str(ROOT / "resources/gsm-mini/exemplars.jsonl"), "indices": [0]},
        "header": "Solve."}


def cca(*args):
    return subprocess.run([sys.executable, "-m", "cca.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    out = tmp_path_factory.mktemp("inst") / "mini.parquet"
    proc = cca("instances", "generate", "--templates", MINI, "--n", 5, "--seed", 0, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_generate_and_verify_round_trip(instances):
    df = pd.read_parquet(instances)
    assert df.groupby("template_id").size().eq(5).all()
    assert df.instance_id.is_unique
    proc = cca("instances", "verify", instances, "--templates", MINI)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(df)} of {len(df)} instances valid" in proc.stdout


def test_verify_reports_tampered_rows(instances, tmp_path):
    df = pd.read_parquet(instances)
    df.loc[0, "answer"] = str(float(df.loc[0, "answer_value"]) + 1).removesuffix(".0")
    path = tmp_path / "tampered.jsonl"
    df.to_json(path, orient="records", lines=True)
    proc = cca("instances", "verify", path, "--templates", MINI)
    assert proc.returncode == 1
    assert df.loc[0, "instance_id"] in proc.stdout
    assert f"{len(df) - 1} of {len(df)} instances valid" in proc.stdout


def test_template_failing_its_default_check_is_named(tmp_path):
    bad = tmp_path / "templates"
    shutil.copytree(MINI, bad)
    first = sorted(bad.glob("*.json"))[0]
    t = json.loads(first.read_text())
    t["answer"] = t["answer"].rsplit("####", 1)[0] + "#### 123456"
    first.write_text(json.dumps(t))
    out = tmp_path / "out.parquet"
    proc = cca("instances", "generate", "--templates", bad, "--n", 2, "--seed", 0, "--out", out)
    assert proc.returncode == 2
    assert f"templates/{first.stem}" in proc.stderr and proc.stderr.startswith("error:")
    assert not out.exists() and list(tmp_path.glob(".out.parquet*")) == []


def test_unwritable_results_directory(tmp_path, instances):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")
    proc = cca("splits", "--instances", instances, "--seed", 0, "--train", 2, "--val", 1, "--test", 2,
               "--out", blocker / "splits" / "seed0.parquet")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot create directory" in proc.stderr


def test_missing_template_directory():
    proc = cca("instances", "generate", "--templates", "no/such/dir", "--n", 2, "--seed", 0, "--out", "x.parquet")
    assert proc.returncode == 2 and "no/such/dir does not exist" in proc.stderr


def test_config_command_shows_settings():
    proc = cca("config", "--config", ROOT / "config.yaml", "--model", "gemma-3-270m")
    assert proc.returncode == 0 and "profile small" in proc.stdout


@pytest.fixture(scope="module")
def tiny_stage23(tmp_path_factory):
    """A tiny checkpoint and a hand-made Error-Localization dataset (shared prompt + own suffixes)."""
    import random

    from cca.models.registry import prepare_model

    d = tmp_path_factory.mktemp("stage23")
    prepare_model("tiny-llama", d / "ckpt")
    rng = random.Random(0)
    shared = [rng.randrange(5, 500) for _ in range(30)]
    rows = [{"status": "ok", "prefix_ids": shared + [rng.randrange(5, 500) for _ in range(3 + i)],
             "desired_id": rng.randrange(5, 500), "undesired_id": rng.randrange(5, 500)} for i in range(4)]
    pd.DataFrame(rows).to_parquet(d / "el.parquet")
    pd.DataFrame([{**rows[0], "status": "no_flip"}]).to_parquet(d / "empty.parquet")
    return d


DCM = {"dcm": {"lr": 0.5, "epochs": 6, "batch_size": 2, "lr_step_size": 5, "lr_gamma": 0.9,
               "early_stop_fraction": 0.5, "unselected": "ablate"}}


def test_dcm_refuses_a_dataset_without_pivots(tiny_stage23, tmp_path):
    out = tmp_path / "lambda0.01.safetensors"
    proc = cca("dcm", "--checkpoint", tiny_stage23 / "ckpt", "--dataset", tiny_stage23 / "empty.parquet",
               "--lam", 0.01, "--seed", 0, "--settings", json.dumps(DCM), "--out", out)
    assert proc.returncode == 2 and "no pivots" in proc.stderr and "sampling.num_samples" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_dcm_mask_collapse_names_the_setting_and_writes_nothing(tiny_stage23, tmp_path):
    out = tmp_path / "lambda100.safetensors"
    proc = cca("dcm", "--checkpoint", tiny_stage23 / "ckpt", "--dataset", tiny_stage23 / "el.parquet",
               "--lam", 100, "--seed", 0, "--settings", json.dumps(DCM), "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert "selected no component" in proc.stderr and "lower dcm.lambdas" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_dcm_writes_the_mask_its_history_and_figures(tiny_stage23, tmp_path):
    from cca.circuits.mask_file import load_mask

    out = tmp_path / "lambda0.0001.safetensors"
    proc = cca("dcm", "--checkpoint", tiny_stage23 / "ckpt", "--dataset", tiny_stage23 / "el.parquet",
               "--lam", 1e-4, "--seed", 0, "--settings", json.dumps(DCM), "--out", out)
    assert proc.returncode == 0, proc.stderr
    _, meta = load_mask(out)
    history = pd.read_parquet(tmp_path / "lambda0.0001.history.parquet")
    assert {"selected", "lr", "sum_lr_lambda"} <= set(history.columns)
    assert meta["sum_lr_lambda"] == pytest.approx(history["sum_lr_lambda"].iloc[-1])
    assert meta["sum_lr_lambda"] == pytest.approx(1e-4 * history["lr"].sum())
    assert meta["step"] == "batched" and meta["seconds_per_epoch"] >= 0
    for figure in ("heads", "neurons", "selected"):
        assert (tmp_path / f"lambda0.0001.{figure}.png").stat().st_size > 0


def test_update_refuses_an_empty_mask(tiny_stage23, tmp_path):
    import torch

    from cca.circuits.mask_file import save_mask

    zero = {f"layers.{i}.{k}": torch.zeros(n, dtype=torch.bool) for i in range(2)
            for k, n in (("q", 4), ("k", 2), ("v", 2), ("mlp", 256))}
    save_mask(tmp_path / "m.safetensors", {k: v.float() for k, v in zero.items()}, zero, {"lambda": 1.0})
    settings = {"update": {"lrs": [1e-3], "steps": 2, "eval_steps": [2]},
                "generation": {"backend": "hf", "dtype": "float32", "max_new_tokens": 8, "max_model_len": 512}}
    out = tmp_path / "run" / "update.json"
    out.parent.mkdir()
    proc = cca("update", "--variant", "mask", "--checkpoint", tiny_stage23 / "ckpt", "--dataset",
               tiny_stage23 / "el.parquet", "--greedy", "x", "--splits", "y", "--masks", tmp_path / "m.safetensors",
               "--seed", 0, "--settings", json.dumps(settings), "--out", out)
    assert proc.returncode == 2 and "selects no component" in proc.stderr and "dcm.lambdas" in proc.stderr
    assert not list(out.parent.iterdir())


def test_general_evaluation_names_missing_data(tiny_stage23, tmp_path):
    settings = {"general": {"questions": {"arc_challenge": 2}, "data_dir": str(tmp_path / "nowhere")}}
    out = tmp_path / "general.parquet"
    proc = cca("evaluate", "general", "--checkpoint", tiny_stage23 / "ckpt", "--settings", json.dumps(settings),
               "--out", out)
    assert proc.returncode == 2 and "arc_challenge.jsonl" in proc.stderr and "general.data_dir" in proc.stderr
    assert not out.exists()


def test_lora_without_eligible_templates_says_which_setting(tiny_stage23, instances, tmp_path):
    inst = pd.read_parquet(instances)
    split = inst.assign(split="train")
    acc = pd.DataFrame({"template_id": inst.template_id.unique(), "train_eligible": False})
    split.to_parquet(tmp_path / "split.parquet")
    acc.to_parquet(tmp_path / "acc.parquet")
    settings = {"lora": {"r": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"], "lrs": [1e-3], "epochs": 1,
                         "batch_size": 2, "warmup_steps": 0},
                "generation": {"backend": "hf", "max_new_tokens": 8}, "eval_dtype": "float32", "task": TASK}
    out = tmp_path / "lora" / "update.json"
    out.parent.mkdir()
    proc = cca("lora", "--checkpoint", tiny_stage23 / "ckpt", "--instances", instances, "--splits",
               tmp_path / "split.parquet", "--accuracy", tmp_path / "acc.parquet", "--greedy", "x",
               "--seed", 0, "--settings", json.dumps(settings), "--out", out)
    assert proc.returncode == 2 and "template_filter.max_base_accuracy" in proc.stderr
    assert not list(out.parent.iterdir())


def test_original_math_takes_test_rows_from_greedy_traces_and_generates_robustness_sets(tiny_stage23, instances,
                                                                                       tmp_path):
    """With the greedy traces generated in the evaluation dtype, the original's test rows are those traces;
    a robustness set is still generated; with another dtype the test rows are generated too."""
    inst = pd.read_parquet(instances)
    split = inst[["instance_id", "template_id"]].assign(split=["test" if i % 5 < 2 else "train"
                                                                 for i in range(len(inst))])
    split.to_parquet(tmp_path / "split.parquet")
    test_ids = list(split.loc[split.split == "test", "instance_id"])
    greedy = inst.assign(prompt_ids=[[1]] * len(inst), completion_ids=[[2]] * len(inst), completion_text="x",
                         finish_reason="stop", prediction=None, error=None,
                         correct=[i % 3 == 0 for i in range(len(inst))])
    greedy.to_parquet(tmp_path / "greedy.parquet")
    robust = tmp_path / "hard.parquet"
    proc = cca("instances", "generate", "--templates", MINI, "--n", 1, "--seed", 1, "--out", robust,
               "--name", "hard", "--perturbed")
    assert proc.returncode == 0, proc.stderr
    for dtype, from_traces in (("float32", True), ("bfloat16", False)):
        settings = {"generation": {"backend": "hf", "dtype": dtype, "max_new_tokens": 4, "max_model_len": 1024},
                    "eval_dtype": "float32", "test_per_template": 2, "task": TASK}
        out = tmp_path / dtype / "math.parquet"
        out.parent.mkdir()
        proc = cca("evaluate", "math", "--checkpoint", tiny_stage23 / "ckpt", "--instances", instances, "--splits",
                   tmp_path / "split.parquet", "--robustness", f"hard={robust}", "--greedy", tmp_path / "greedy.parquet",
                   "--settings", json.dumps(settings), "--out", out)
        assert proc.returncode == 0, proc.stderr
        rows = pd.read_parquet(out)
        test = rows[rows.set == "test"].set_index("instance_id")
        assert sorted(test.index) == sorted(test_ids) and set(rows.set) == {"test", "hard"}
        source = json.loads(out.with_suffix(".json").read_text())["source"]
        if from_traces:
            assert list(test.loc[test_ids, "correct"]) == list(greedy.set_index("instance_id").loc[test_ids, "correct"])
            assert "greedy.parquet" in source and "hard generated" in source
        else:
            assert "greedy.parquet" not in source and (test.completion_text != "x").all()
