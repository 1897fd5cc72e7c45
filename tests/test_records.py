"""A task from a JSONL file of question/answer records (cca.tasks.records): reading, drawing, bad input, and
the workflow building a model's instances and splits from it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cca.config import ROOT
from cca.errors import CCAError
from cca.tasks.records import numeric_answer, read_records, records_frame

TINY = Path(__file__).parent / "data" / "config_tiny.yaml"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("answer,value", [(12, 12.0), (2.5, 2.5), ("1,250.5", 1250.5), ("$12", 12.0), ("3/4", 0.75),
                                          ("She has 9 + 3 = 12.\n#### 12", 12.0), ("-4", -4.0)])
def test_numeric_answers(answer, value):
    assert numeric_answer(answer)[0] == value


def test_records_keep_their_solution_and_group(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}", "group": "ab"[i % 2]} for i in range(6)]
    records = read_records(_write(tmp_path / "t.jsonl", rows))
    assert [r["answer_value"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["solution"].endswith("#### 1") and records[0]["answer"] == "1"
    df = records_frame(records, "mine", per_group=2, seed=0)
    assert list(df["template_id"].unique()) == ["mine/a", "mine/b"] and len(df) == 4
    assert df["instance_id"].is_unique and (df["variables"] == "{}").all()
    # a group's draw depends on the seed and the group only
    assert records_frame(records, "mine", 2, 0).equals(df)
    assert not records_frame(records, "mine", 2, 1)["instance_id"].equals(df["instance_id"])


@pytest.mark.parametrize("rows,message", [
    ([{"question": "q", "answer": "1"}, {"question": "q2"}], "line 2: the record has no answer"),
    ([{"question": "q", "answer": "seven"}], "line 1: the answer cannot be scored"),
    ([{"question": "", "answer": "1"}], "line 1: the record has no question"),
    ([{"id": "x", "question": "q", "answer": 1}, {"id": "x", "question": "r", "answer": 2}],
     "line 2: id 'x' is also the id of line 1"),
    (['{"question": "q", "answer": 1', {"question": "r", "answer": 2}], "line 1: not a JSON object"),
])
def test_bad_records_are_refused_naming_the_line(tmp_path, rows, message):
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CCAError, match=message) as e:
        read_records(path)
    assert str(path) in str(e.value)


def test_too_few_records_for_the_split_is_a_clear_error(tmp_path):
    records = read_records(_write(tmp_path / "t.jsonl", [{"question": "q", "answer": 1}] * 3))
    with pytest.raises(CCAError, match="group 'all' has 3 records but instances.per_template is 5"):
        records_frame(records, "t", per_group=5, seed=0, source="t.jsonl")


def test_the_workflow_builds_instances_and_splits_from_records(tmp_path):
    """A model whose task is a JSONL file: its instances come from the records rule (not from templates),
    and its splits, traces, localization and the table are planned as for a template task."""
    gsm8k = [json.loads(line) for line in (ROOT / "resources/gsm8k/test.jsonl").read_text().split("\n")[:40] if line]
    records = _write(tmp_path / "gsm8k-slice.jsonl", gsm8k)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["tasks"]["slice"] = {"records": str(records), "set_name": "gsm8k", "robustness": {},
                             "exemplars": {"file": "resources/gsm8k/train.jsonl", "indices": [0, 1]}}
    cfg["models"]["tiny-llama"]["overrides"] = {"task": "slice", "instances": {"per_template": 12, "seed": 0},
                                                "splits": {"train": 6, "val": 2, "test": 4}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
                 "--directory", str(tmp_path), "--cores", "1"]
    plan = subprocess.run([*snakemake, "-n", "results/tiny-llama/table.csv"], capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "rule record_instances:" in plan.stdout + plan.stderr
    assert "instances generate" not in plan.stdout + plan.stderr
    run = subprocess.run([*snakemake, "results/tiny-llama/splits/seed0.parquet"], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    inst = pd.read_parquet(tmp_path / "results/tiny-llama/instances/main.parquet")
    assert len(inst) == 12 and set(inst["template_id"]) == {"gsm8k/all"}
    by_question = {r["question"]: r for r in gsm8k}
    for row in inst.itertuples():
        assert row.answer_value == float(by_question[row.question]["answer"].split("####")[-1].replace(",", ""))
    splits = pd.read_parquet(tmp_path / "results/tiny-llama/splits/seed0.parquet")
    assert splits["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 4}


@pytest.mark.parametrize("task", [{"exemplars": {"file": "x", "indices": []}},
                                  {"templates": "t", "records": "r.jsonl", "exemplars": {"file": "x", "indices": []}}])
def test_a_task_has_templates_or_records(task):
    from cca.config import load_config, validate_config

    cfg = load_config(ROOT / "config.yaml")
    cfg["tasks"]["odd"] = task
    with pytest.raises(CCAError, match="tasks.odd: give either templates .* or records"):
        validate_config(cfg)


def test_multiple_choice_records_take_a_letter_an_index_or_the_choice_text(tmp_path):
    choices = ["rock", "light", "sand"]
    rows = [{"question": "What do plants need?", "choices": choices, "answer": a} for a in ("B", 1, "light")]
    rows.append({"question": "How many legs has a cat?", "answer": "4"})
    records = read_records(_write(tmp_path / "mc.jsonl", rows))
    assert [r["answer_value"] for r in records[:3]] == [1.0, 1.0, 1.0]
    assert {r["answer"] for r in records[:3]} == {"B"} and records[0]["answer_format"] == "choice"
    assert records[0]["question"] == "What do plants need?\nA. rock\nB. light\nC. sand"
    assert records[3]["answer_format"] == "number" and records[3]["answer_value"] == 4.0
    df = records_frame(records, "mc", per_group=4, seed=0)
    assert sorted(df["answer_format"]) == ["choice"] * 3 + ["number"]
    # a numeric task's table has no answer_format column: every later stage reads its answers as numbers
    numeric = records_frame(records[3:], "n", per_group=1, seed=0)
    assert "answer_format" not in numeric.columns


@pytest.mark.parametrize("record,message", [
    ({"question": "q", "choices": ["a", "b"], "answer": "C"}, "neither a letter A-B, an index nor one of the choices"),
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, "index 2 is outside the 2 choices"),
    ({"question": "q", "choices": ["a"], "answer": "A"}, "choices must be a list of 2 to 26"),
    ({"question": "q", "choices": "a, b", "answer": "A"}, "choices must be a list"),
    ({"question": "q", "choices": ["a", ""], "answer": "A"}, "non-empty strings"),
    ({"question": "q", "choices": ["a", "b"], "answer": True}, "a boolean is not a choice"),
])
def test_bad_multiple_choice_records_are_refused_naming_the_line(tmp_path, record, message):
    path = _write(tmp_path / "bad.jsonl", [{"question": "ok", "answer": 1}, record])
    with pytest.raises(CCAError, match=message) as e:
        read_records(path)
    assert f"{path}" in str(e.value) and "line 2" in str(e.value)


def test_a_multiple_choice_solution_is_kept_for_lora():
    from cca.tasks.records import choice_answer

    assert choice_answer("Plants use light.\n#### B", ["rock", "light"]) == 1


def test_lora_refuses_training_instances_without_a_solution(tmp_path):
    """A records task of bare answers has nothing for LoRA to train on: one line saying what to give."""
    from cca.update.lora import require_solutions

    rows = [{"question": "q0", "answer": "0 + 1 = 1\n#### 1"}, {"id": "bare", "question": "q1", "answer": 2}]
    train = records_frame(read_records(_write(tmp_path / "t.jsonl", rows)), "t", per_group=2, seed=0)
    with pytest.raises(CCAError, match=r"1 of its 2 training instances have none \(e.g. t/all#bare\)"):
        require_solutions(train)
    require_solutions(train[train["instance_id"] != "t/all#bare"])
