"""The `cca` command's bad-input behaviour: one line naming the thing, exit 2, nothing half-written."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from cca.config import ROOT

MINI = ROOT / "resources" / "gsm-mini" / "templates"


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
    proc = cca("instances", "generate", "--templates", bad, "--n", 2, "--out", out)
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
    proc = cca("instances", "generate", "--templates", "no/such/dir", "--n", 2, "--out", "x.parquet")
    assert proc.returncode == 2 and "no/such/dir does not exist" in proc.stderr


def test_config_command_shows_settings():
    proc = cca("config", "--config", ROOT / "config.yaml", "--model", "gemma-3-270m")
    assert proc.returncode == 0 and "profile small" in proc.stdout


def test_pending_stage_names_its_issue():
    proc = cca("pending", "DCM mask training", "--issue", "issue #4")
    assert proc.returncode == 2 and "issue #4" in proc.stderr
