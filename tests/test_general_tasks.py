"""The general-ability lm-eval tasks (cca/evaluate/tasks/*.yaml): what they ask the model and how they score it.

The digests below fix the requests and model-free scores of a small selection: a change to any prompt,
few-shot example or its order, continuation, target, generation setting, subsample or scoring function
changes them.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cca.errors import CCAError

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = {"mmlu_stem": 1, "mmlu_humanities": 1, "arc_challenge": 5, "truthfulqa_mc1": 3, "truthfulqa_mc2": 4,
             "triviaqa": 6}
SEED, SHOTS = 3, 2
REQUESTS_SHA = "1cd76c7d6abfd2733a585656674339bc524a52f6b9ee02c34734dac4941f8fdd"
SCORES_SHA = "3e658b0be223331cbce7c8b7531ef0323c5f94d9f89aec1fe1158f2f029ee838"


def _h(x) -> int:
    return int(hashlib.sha256(repr(x).encode()).hexdigest()[:8], 16)


def _fake_results(task, doc, instances):
    """Deterministic model outputs: (log-likelihood, greedy) per choice, or a generation that is, by
    document, the answer, the answer in upper case with punctuation, an article and an alias, or wrong."""
    if task.OUTPUT_TYPE == "generate_until":
        k = instances[0].doc_id % 4
        value, aliases = doc["answer"]["value"], doc["answer"]["aliases"]
        return [[value, value.upper() + "!", "The " + aliases[-1], value + " Street"][k]]
    return [(-(_h(i.arguments) % 1000) / 100, bool(_h(i.arguments) % 2)) for i in instances]


def request_records(configs: dict) -> dict:
    """``{benchmark/task: {output_type, num_fewshot, metrics, rows}}``, one row per document: the doc,
    every request (type, index, repeats, arguments) and the scores of ``_fake_results``. The tasks are
    prepared the way ``cca.evaluate.general.evaluate`` has ``simple_evaluate`` prepare them (its few-shot seed)."""
    from cca.evaluate.general import SEEDS

    out = {}
    for bench, tasks in configs.items():
        for task in tasks:
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=SEEDS["fewshot_random_seed"])
            task.build_all_requests()
            by_doc = {}
            for inst in task.instances:
                by_doc.setdefault(inst.doc_id, []).append(inst)
            rows = []
            for doc_id, insts in sorted(by_doc.items()):
                insts.sort(key=lambda i: i.idx)
                doc = insts[0].doc
                rows.append({"doc_id": doc_id, "doc": doc,
                             "requests": [[i.request_type, i.idx, i.repeats, list(i.arguments)] for i in insts],
                             "scores": task.process_results(doc, _fake_results(task, doc, insts))})
            out[f"{bench}/{task.config.task}"] = {
                "output_type": task.OUTPUT_TYPE, "num_fewshot": task.config.num_fewshot,
                "metrics": {m: task.higher_is_better()[m] for m in sorted(task.aggregation())}, "rows": rows}
    return out


def digests(records: dict) -> tuple[str, str]:
    """sha256 of everything but the scores, and of the scores."""
    def sha(x):
        return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()

    requests = {k: {**v, "rows": [{**r, "scores": None} for r in v["rows"]]} for k, v in records.items()}
    scores = {k: [r["scores"] for r in v["rows"]] for k, v in records.items()}
    return sha(requests), sha(scores)


@pytest.fixture(scope="module")
def records():
    from cca.evaluate.general import task_configs

    return request_records(task_configs(ROOT / "resources", QUESTIONS, seed=SEED, triviaqa_shots=SHOTS))


def test_requests_and_scores_match_the_stored_digests(records):
    assert digests(records) == (REQUESTS_SHA, SCORES_SHA)


def _rows(records, key):
    return records[key]["rows"]


def test_every_benchmark_is_a_yaml_task_or_tag():
    from cca.evaluate.general import BENCHMARKS, TASKS_DIR, task_manager
    from cca.evaluate.tasks.utils import mmlu_subjects

    index = task_manager().task_index
    assert all(e.yaml_path is None or Path(e.yaml_path).is_relative_to(TASKS_DIR) for e in index.values())
    for bench in BENCHMARKS:
        assert f"cca_{bench}" in index
    for group in ("stem", "humanities"):
        subjects = sorted(t.split("__")[1] for t in index[f"cca_mmlu_{group}"].tags)
        assert subjects == mmlu_subjects(ROOT / "resources", group)
    assert len(index) == 19 + 13 + 2 + 4   # subjects, the two tags, ARC, TruthfulQA MC1/MC2, TriviaQA


def test_yamls_hold_no_data_paths_and_are_package_data():
    import tomllib

    from cca.evaluate.general import TASKS_DIR

    files = sorted(p for p in TASKS_DIR.rglob("*") if p.suffix == ".yaml" or p.name.endswith("_yaml"))
    assert len(files) == 19 + 13 + 1 + 1 + 3 + 1
    assert not any("resources" in p.read_text() or "data_dir" in p.read_text() for p in files)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["cca.evaluate.tasks"]
    assert all(any(p.relative_to(TASKS_DIR).match(pat) for pat in patterns) for p in files)


def test_requests_follow_the_benchmarks_formats(records):
    mmlu = [k for k in records if k.startswith("mmlu_")]
    assert len(mmlu) == 19 + 13
    for key in mmlu:
        (row,) = _rows(records, key)
        assert [r[3][1] for r in row["requests"]] == [" A", " B", " C", " D"]
        context = row["requests"][0][3][0]
        assert context.startswith("The following are multiple choice questions (with answers) about ")
        assert context.count("\nAnswer:") == 5 + 1 and context.endswith("\nAnswer:")
    for key, n in [("arc_challenge/cca_arc_challenge", 5), ("truthfulqa_mc1/cca_truthfulqa_mc1", 3),
                   ("truthfulqa_mc2/cca_truthfulqa_mc2", 4), ("triviaqa/cca_triviaqa", 6)]:
        assert len(_rows(records, key)) == n
    for key in ("truthfulqa_mc1/cca_truthfulqa_mc1", "truthfulqa_mc2/cca_truthfulqa_mc2"):
        for row in _rows(records, key):
            context = row["requests"][0][3][0]
            assert context.startswith("Q: What is human life expectancy in the United States?\n")
            assert context.endswith(f"\n\nQ: {row['doc']['question']}\nA:")
    trivia = records["triviaqa/cca_triviaqa"]
    assert trivia["num_fewshot"] == SHOTS and trivia["metrics"] == {"exact_match": True}
    for row in trivia["rows"]:
        ((kind, _, _, (context, gen)),) = row["requests"]
        assert kind == "generate_until" and gen == {"until": ["\n", ".", ","], "do_sample": False, "temperature": 0.0}
        assert context.count("\nAnswer:") == SHOTS + 1 and context.endswith(f"Question: {row['doc']['question']}?\nAnswer:")


def test_subsamples_are_the_seeded_sorted_choice(records):
    from cca.evaluate.tasks.utils import TRIVIAQA_POOL

    def expected(n_total, n):
        return [str(i) for i in sorted(np.random.default_rng(SEED).choice(n_total, size=n, replace=False))]

    items = {k: [r["doc"]["item"] for r in v["rows"]] for k, v in records.items()}
    arc_total = len((ROOT / "resources/arc_challenge/arc_challenge.jsonl").read_text().strip().split("\n"))
    assert items["arc_challenge/cca_arc_challenge"] == expected(arc_total, 5)
    assert items["truthfulqa_mc2/cca_truthfulqa_mc2"] == expected(817, 4)
    trivia_total = len((ROOT / "resources/triviaqa/triviaqa_sm_sub.jsonl").read_text().strip().split("\n"))
    assert items["triviaqa/cca_triviaqa"] == expected(trivia_total - TRIVIAQA_POOL, 6)


def test_scores_use_the_custom_metrics(records):
    mc2 = [r["scores"]["acc"] for r in _rows(records, "truthfulqa_mc2/cca_truthfulqa_mc2")]
    assert all(0 < x < 1 for x in mc2)   # a mass, not a 0/1 accuracy
    trivia = [r["scores"]["exact_match"] for r in _rows(records, "triviaqa/cca_triviaqa")]
    # lm-eval's exact match: the answer, upper case and "!" count; "The " + alias only where the alias has it
    expected = [[1.0, 1.0, float(r["doc"]["answer"]["aliases"][-1].lower().startswith("the ")), 0.0][r["doc_id"] % 4]
                for r in _rows(records, "triviaqa/cca_triviaqa")]
    assert trivia == expected and 0.0 in trivia and 1.0 in trivia


def test_data_dir_is_read_at_run_time(tmp_path):
    from cca.evaluate.general import task_configs

    with pytest.raises(CCAError, match="is missing"):
        task_configs(tmp_path, {"arc_challenge": 2})
