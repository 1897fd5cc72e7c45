"""Evaluation metrics, the paired bootstrap, the results table, general-ability tasks and LoRA, on tiny inputs."""
import numpy as np
import pandas as pd
import pytest
import torch

from cca.config import ROOT
from cca.errors import CCAError
from cca.evaluate.math_accuracy import math_summary, paired_bootstrap, set_accuracy, evaluation_instances
from cca.evaluate.table import general_columns, math_table, results_table, run_record


def test_test_instances_use_the_split_or_the_first_per_template():
    inst = pd.DataFrame({"instance_id": [f"t{t}#{i}" for t in range(2) for i in range(4)],
                         "template_id": [f"t{t}" for t in range(2) for _ in range(4)]})
    split = pd.DataFrame({"instance_id": inst["instance_id"], "split": ["train", "test", "val", "test"] * 2})
    assert list(evaluation_instances(inst, split, 99)["instance_id"]) == ["t0#1", "t0#3", "t1#1", "t1#3"]
    assert list(evaluation_instances(inst, None, 2)["instance_id"]) == ["t0#0", "t0#1", "t1#0", "t1#1"]


def test_set_accuracy_is_the_mean_of_template_means():
    rows = pd.DataFrame({"template_id": ["a", "a", "a", "a", "b"], "correct": [1, 0, 0, 0, 1],
                         "error": [None] * 4 + ["boom"]})
    acc = set_accuracy(rows)
    assert acc == {"template_mean": 0.25, "mean": 0.25, "n": 4, "errors": 1}
    rows["error"] = None
    assert set_accuracy(rows)["template_mean"] == pytest.approx((0.25 + 1.0) / 2)
    assert math_summary(rows.assign(set="test"))["test"]["n"] == 5


def test_paired_bootstrap_interval_and_significance():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 400).astype(float)
    same = paired_bootstrap(a, a.copy(), iters=2000)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0 and not same["significant"]
    b = a.copy()
    b[a == 0] = rng.integers(0, 2, int((a == 0).sum()))   # b only ever fixes a's mistakes
    up = paired_bootstrap(a, b, iters=2000)
    assert up["diff"] == pytest.approx(b.mean() - a.mean()) and up["lo"] > 0 and up["significant"]
    noise = paired_bootstrap(a, rng.permutation(a), iters=2000)
    assert noise["lo"] < noise["diff"] < noise["hi"]
    with pytest.raises(CCAError, match="equal-length"):
        paired_bootstrap([1, 0], [1])


def test_grouped_bootstrap_point_is_the_template_mean_difference():
    groups = ["a"] * 4 + ["b"] * 2
    a = np.array([0, 0, 0, 0, 1, 1.0])
    b = np.array([1, 0, 0, 0, 1, 1.0])
    r = paired_bootstrap(a, b, iters=500, groups=groups)
    assert r["diff"] == pytest.approx(((0.25 - 0) + (1 - 1)) / 2)


def _math(test, p1=None):
    sets = {"test": {"template_mean": test, "mean": test, "n": 10}}
    if p1 is not None:
        sets["p1"] = {"template_mean": p1, "mean": p1, "n": 10}
    return {"sets": sets}


def test_math_table_means_stds_and_deltas_over_seeds():
    recs = [run_record("original", 0, _math(0.4, 0.2), None, 0, 0.0),
            run_record("original", 1, _math(0.5, 0.3), None, 0, 0.0),
            run_record("cca-branching-mask", 0, _math(0.5, 0.2), {"chosen": "updated"}, 30, 1.5),
            run_record("cca-branching-mask", 1, _math(0.5, 0.3), {"chosen": "base"}, 32, 1.5)]
    t = math_table(recs).set_index("configuration")
    assert list(t.index) == ["original", "cca-branching-mask"]
    cca = t.loc["cca-branching-mask"]
    assert cca["test_mean"] == pytest.approx(0.5) and cca["test_std"] == pytest.approx(0.0)
    assert cca["test_delta"] == pytest.approx(100 * ((0.5 - 0.4) + (0.5 - 0.5)) / 2)
    assert cca["p1_delta"] == pytest.approx(0.0) and cca["dataset_size"] == 31 and cca["updated_seeds"] == 1
    assert t.loc["original", "test_std"] == pytest.approx(np.std([0.4, 0.5], ddof=1))


def test_math_delta_intervals_pair_questions_across_seeds_and_sit_next_to_their_delta():
    from cca.evaluate.table import math_delta_intervals

    def items(correct):        # 2 seeds x 2 templates x 10 questions, one set
        return pd.DataFrame({"seed": np.repeat([0, 1], 20), "set": "test", "instance_id": np.tile(np.arange(20), 2),
                             "template_id": np.tile(np.repeat(["a", "b"], 10), 2), "correct": correct})

    orig = items([False] * 40)
    better = items([True] * 30 + [False] * 10)
    same = items([False] * 40)
    ci = math_delta_intervals({"original": orig, "lora": better, "cca-prefix-mask": same}, iters=500)
    ci = ci.set_index("configuration")
    assert ci.loc["lora", "test_delta_lo"] > 0 and ci.loc["lora", "test_delta_hi"] <= 100
    assert ci.loc["cca-prefix-mask", ["test_delta_lo", "test_delta_hi"]].tolist() == [0.0, 0.0]
    with pytest.raises(CCAError, match="other questions"):
        math_delta_intervals({"original": orig, "lora": better.assign(instance_id=better["instance_id"] + 1)})
    recs = [run_record("original", s, _math(0.0), None, 0, 0.0) for s in (0, 1)] + \
        [run_record("lora", s, _math(0.75), {"chosen": "updated"}, 12, 1.4) for s in (0, 1)]
    table = results_table(recs, None, ci.reset_index())
    cols = list(table.columns)
    assert cols[cols.index("test_delta") + 1: cols.index("test_delta") + 3] == ["test_delta_lo", "test_delta_hi"]
    row = table.set_index("configuration").loc["lora"]
    assert row["test_delta"] == pytest.approx(75.0)
    assert row["test_delta_lo"] <= row["test_delta"] <= row["test_delta_hi"]


def test_general_columns_pair_questions_and_refuse_other_questions():
    orig = pd.DataFrame({"benchmark": ["arc"] * 40, "item": [f"q{i}" for i in range(40)],
                         "score": [0.0] * 20 + [1.0] * 20})
    better = orig.assign(score=1.0)
    g = general_columns({"original": orig, "lora": better}, iters=500).set_index("configuration")
    assert g.loc["original", "arc"] == 50 and g.loc["lora", "arc"] == 100
    assert g.loc["lora", "arc_delta"] == pytest.approx(50) and g.loc["lora", "arc_delta_lo"] > 0
    with pytest.raises(CCAError, match="other questions"):
        general_columns({"original": orig, "lora": better.assign(item=[f"q{i}" for i in range(39)] + ["other"])})
    table = results_table([run_record("original", 0, _math(0.4), None, 0, 0.0),
                           run_record("lora", 0, _math(0.45), {"chosen": "updated"}, 12, 1.4)], g.reset_index())
    assert table.notna().all().all()


def test_general_task_configs_read_the_vendored_data():
    from cca.evaluate.general import BENCHMARKS, task_configs

    configs = task_configs(ROOT / "resources", {"mmlu_stem": 2, "mmlu_humanities": 1, "arc_challenge": 5,
                                                "truthfulqa_mc1": 3, "truthfulqa_mc2": 3, "triviaqa": 4})
    assert set(configs) == set(BENCHMARKS)
    assert len(configs["mmlu_stem"]) == 19 and len(configs["mmlu_humanities"]) == 13
    ds = configs["mmlu_stem"][0].dataset
    assert len(ds["test"]) == 2 and len(ds["dev"]) == 5 and ds["test"][0]["answer"] in range(4)
    tqa = configs["truthfulqa_mc2"][0].dataset["validation"]
    assert len(tqa) == 3 and sum(tqa[0]["mc2_labels"]) >= 1
    trivia = configs["triviaqa"][0].dataset
    assert not set(trivia["validation"]["item"]) & set(trivia["train"]["item"])   # few-shot pool is disjoint
    assert len(trivia["validation"]) == 4 and len(trivia["train"]) == 100
    again = task_configs(ROOT / "resources", {"arc_challenge": 5})["arc_challenge"][0].dataset
    assert again["test"]["item"] == configs["arc_challenge"][0].dataset["test"]["item"]
    with pytest.raises(CCAError, match="unknown benchmarks"):
        task_configs(ROOT / "resources", {"hellaswag": 3})


def test_truthfulqa_mc2_is_the_normalised_mass_of_true_answers():
    from cca.evaluate.general import _mc2

    ll = np.log([0.1, 0.1, 0.3])   # unnormalised: the masses are renormalised over the choices
    assert _mc2({"mc2_labels": [1, 1, 0]}, [(x, False) for x in ll])["acc"] == pytest.approx(0.4)


def test_general_evaluate_scores_every_question_on_a_tiny_model():
    from cca.evaluate.general import evaluate, task_configs
    from cca.models.tiny import build_tiny_model

    model, tok = build_tiny_model("llama", seed=0)
    configs = task_configs(ROOT / "resources", {"mmlu_humanities": 1, "arc_challenge": 3, "truthfulqa_mc1": 2,
                                                "truthfulqa_mc2": 2, "triviaqa": 2})
    df = evaluate(model, tok, configs, batch_size=4)
    assert df.groupby("benchmark").size().to_dict() == {"mmlu_humanities": 13, "arc_challenge": 3,
                                                        "arc_challenge_acc_norm": 3, "truthfulqa_mc1": 2,
                                                        "truthfulqa_mc2": 2, "triviaqa": 2}
    assert df["score"].between(0, 1).all()
    assert df.groupby("benchmark")["item"].nunique().sum() == len(df)
    arc = df[df["benchmark"].str.startswith("arc")].pivot(index="item", columns="benchmark", values="score")
    assert list(arc.columns) == ["arc_challenge", "arc_challenge_acc_norm"] and len(arc) == 3


@pytest.mark.parametrize("batch_size", [1, 3])
def test_continuation_logits_give_plain_hflm_loglikelihoods(batch_size):
    """Logits only at the continuation (and the batch's padding) change nothing lm-eval reads: the same
    log-likelihoods and greedy flags as plain HFLM, for continuations of 1-3 tokens after contexts of
    different lengths, in one batch and one at a time."""
    from lm_eval.models.huggingface import HFLM

    from cca.evaluate.general import continuation_lm
    from cca.models.tiny import build_tiny_model

    model, tok = build_tiny_model("llama", seed=0)
    g = torch.Generator().manual_seed(0)
    requests = []
    for ctx_len, cont_len in [(5, 1), (17, 3), (9, 2), (30, 1), (12, 1)]:
        ctx = torch.randint(3, tok.vocab_size, (ctx_len,), generator=g).tolist()
        cont = torch.randint(3, tok.vocab_size, (cont_len,), generator=g).tolist()
        requests.append((("", ""), ctx, cont))
    plain = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)._loglikelihood_tokens(requests)
    lm = continuation_lm(pretrained=model, tokenizer=tok, batch_size=batch_size)
    calls = []
    forward = model.forward
    model.forward = lambda *a, **k: calls.append(k.get("logits_to_keep")) or forward(*a, **k)
    try:
        kept = lm._loglikelihood_tokens(requests)
    finally:
        del model.forward
    assert all(c is not None for c in calls)           # the short path was taken
    assert [b for _, b in kept] == [b for _, b in plain]
    assert np.allclose([x for x, _ in kept], [x for x, _ in plain], atol=1e-4)


def lora_config(**values):
    """LoRA settings: these values over a small valid section, the schema's defaults for the rest."""
    from cca.config import profile_section
    from cca.update.config import LoRAConfig

    section = {"r": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"], "lrs": [1e-3], "epochs": 1,
               "batch_size": 2, **values}
    return LoRAConfig.from_dict(profile_section("lora", section))


def test_lora_trains_only_adapters_and_merges_into_a_plain_model():
    from cca.update.lora import add_lora, solution_completion, train_lora, trainable_parameters
    from cca.models.tiny import build_tiny_model

    model, tok = build_tiny_model("llama", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = lora_config(r=4, alpha=8, dropout=0.0, targets=["q_proj", "v_proj", "up_proj"], epochs=2, batch_size=2,
                    warmup_steps=1)
    torch.manual_seed(0)
    pm = add_lora(model, s)
    trainable, total = trainable_parameters(pm)
    assert 0 < trainable < total
    prompts = [tok("Q: one\nA:")["input_ids"], tok("Q: two\nA:")["input_ids"], tok("Q: three\nA:")["input_ids"]]
    completions = [tok(solution_completion(f"{w} is {i}.\n#### {i}"), add_special_tokens=False)["input_ids"]
                   for i, w in enumerate(["x", "y", "z"])]
    assert tok.decode(completions[1]).strip().endswith("The final answer is 1.")
    vals = iter([0.1, 0.3])
    rows, best_at, state = train_lora(pm, prompts, completions, s, 5e-3, lambda e: next(vals), seed=0)
    assert best_at == (2, 4) and state and all("lora_" in k for k in state)   # 2 steps an epoch
    assert [r["val_accuracy"] for r in rows if r["val_accuracy"] is not None] == [0.1, 0.3]
    assert rows[-1]["loss"] < rows[0]["loss"]
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        adapted = pm(input_ids=ids).logits
        plain = pm.merge_and_unload()
        merged_logits = plain(input_ids=ids).logits
    assert torch.allclose(adapted, merged_logits, atol=1e-5)
    changed = [k for k, v in plain.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(any(t in k for t in ("q_proj", "v_proj", "up_proj")) for k in changed)


def test_lora_validates_every_n_steps_with_the_papers_decay_and_clipping(monkeypatch):
    from cca.update.lora import add_lora, evaluation_steps, train_lora
    from cca.models.tiny import build_tiny_model

    assert evaluation_steps(3, 2, None) == {3, 6} and evaluation_steps(3, 2, 4) == {4, 6}
    model, tok = build_tiny_model("llama", seed=0)
    s = lora_config(targets=["q_proj"], epochs=2, batch_size=1, warmup_steps=0, eval_every=3, max_grad_norm=0.5,
                    weight_decay=0.05)
    clipped, decays = [], []
    real_clip, real_adamw = torch.nn.utils.clip_grad_norm_, torch.optim.AdamW
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, n: clipped.append(n) or real_clip(p, n))
    monkeypatch.setattr(torch.optim, "AdamW", lambda p, **kw: decays.append(kw["weight_decay"]) or real_adamw(p, **kw))
    pm = add_lora(model, s)
    prompts = [tok("Q: one\nA:")["input_ids"], tok("Q: two\nA:")["input_ids"]]
    completions = [tok(" 1\n", add_special_tokens=False)["input_ids"]] * 2
    looked = []
    rows, best_at, _ = train_lora(pm, prompts, completions, s, 1e-3, lambda step: looked.append(step) or 0.5, seed=0)
    assert looked == [3, 4] and best_at == (2, 3)      # 4 steps: every 3rd and the last; ties keep the first
    assert clipped == [0.5] * 4 and decays == [0.05]
    assert [r["step"] for r in rows if r["val_accuracy"] is not None] == [3, 4]


def test_saved_adapter_config_does_not_depend_on_set_order(tmp_path):
    """PEFT writes target_modules in set (hash) order, which differs between processes; the saved config is
    sorted so that the same run gives the same bytes."""
    import json

    from cca.update.lora import add_lora, save_adapter
    from cca.models.tiny import build_tiny_model

    model, _ = build_tiny_model("llama", seed=0)
    pm = add_lora(model, lora_config(r=2, alpha=4, dropout=0.0, targets=["q_proj", "v_proj", "up_proj"]))
    pm.peft_config["default"].target_modules = ["v_proj", "up_proj", "q_proj"]   # as one hash order writes it
    save_adapter(pm, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["target_modules"] == ["q_proj", "up_proj", "v_proj"]
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_lora_refuses_unknown_target_modules():
    from cca.update.lora import add_lora
    from cca.models.tiny import build_tiny_model

    model, _ = build_tiny_model("llama", seed=0)
    with pytest.raises(CCAError, match="lora.targets"):
        add_lora(model, lora_config(targets=["query_key_value"]))


def test_table_and_report_leave_configurations_without_general_evaluation_empty(tmp_path):
    """general.configurations may skip some models: their general cells are empty (not zero), and the
    report says they were not evaluated."""
    from cca.evaluate.report import render_report
    from cca.evaluate.table import general_columns, results_table, run_record

    math = {"sets": {"test": {"template_mean": 0.5, "mean": 0.5}}}
    records = [run_record(c, 0, math, None if c == "original" else {"chosen": "updated"}, 10, 1.0)
               for c in ("original", "cca-prefix-mask", "cca-prefix-nomask")]
    scores = {c: pd.DataFrame({"benchmark": ["arc_challenge"] * 4, "item": range(4), "score": s})
              for c, s in (("original", [1, 0, 1, 0]), ("cca-prefix-mask", [1, 1, 1, 0]))}
    table = results_table(records, general_columns(scores, iters=200))
    row = table.set_index("configuration")
    assert row.loc["cca-prefix-mask", "arc_challenge_delta"] == pytest.approx(25.0)
    assert row.loc["cca-prefix-nomask", ["arc_challenge", "arc_challenge_delta"]].isna().all()
    settings = {"profile": "small", "task": "gsm-mini", "seeds": [0], "localization": {"methods": ["prefix"]}}
    report = render_report("m", table, settings, tmp_path, [0])
    line = next(ln for ln in report.splitlines() if ln.startswith("| CCA prefix, w/o mask") and "evaluated" in ln)
    assert "not evaluated" in line
    scored = next(ln for ln in report.splitlines() if ln.startswith("| CCA prefix, w/ mask |") and "+25.0" in ln)
    lo, hi = row.loc["cca-prefix-mask", ["arc_challenge_delta_lo", "arc_challenge_delta_hi"]]
    assert f"+-{(hi - lo) / 2:.1f}" in scored      # the interval's half-width next to the delta


def test_jaccard_overlap_of_masks_and_the_report_section(tmp_path):
    import torch

    from cca.circuits.mask_file import save_mask
    from cca.circuits.overlap import jaccard, mean_pairwise_jaccard
    from cca.evaluate.report import mask_overlaps

    a = {"layers.0.q": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "layers.0.mlp": torch.tensor([1, 0, 0])}
    b = {"layers.0.q": torch.tensor([0, 1, 1, 0], dtype=torch.bool), "layers.0.mlp": torch.tensor([1, 0, 1])}
    a["layers.0.mlp"], b["layers.0.mlp"] = a["layers.0.mlp"].bool(), b["layers.0.mlp"].bool()
    assert jaccard(a, b) == pytest.approx(2 / 5) and jaccard(a, a) == 1.0
    assert mean_pairwise_jaccard([a, b, a]) == pytest.approx((0.4 + 1.0 + 0.4) / 3)
    assert mean_pairwise_jaccard([a]) is None
    with pytest.raises(ValueError, match="different component sites"):
        jaccard(a, {"layers.0.q": a["layers.0.q"]})
    for seed, method, m in ((0, "prefix", a), (0, "branching", b), (1, "prefix", b)):
        d = tmp_path / f"seed{seed}" / method / "masks"
        d.mkdir(parents=True)
        save_mask(d / "lambda0.01.safetensors", {k: v.float() for k, v in m.items()}, m, {"lambda": 0.01})
    rows = {r["between"]: r["jaccard"] for r in mask_overlaps(tmp_path, [0, 1], ["prefix", "branching"])}
    assert rows == {"prefix / branching, seed 0": pytest.approx(0.4), "prefix, seeds [0, 1]": pytest.approx(0.4)}


def test_lambda_sweep_table_reads_sizes_by_kind_and_the_best_validation_per_lambda():
    from cca.evaluate.study import lambda_sweep_table

    counts = pd.DataFrame({"layer": [0, 0, 0, 0], "kind": ["q", "k", "v", "mlp"], "selected": [2, 0, 1, 5],
                           "total": [4, 2, 2, 100]})
    masks = [{"method": "prefix", "seed": 0, "lambda": lam, "counts": counts,
              "meta": {"percent": pct, "sum_lr_lambda": 0.3, "epochs_run": 7, "stopped_early": True}}
             for lam, pct in ((0.1, 7.4), (0.01, 20.0))]
    curve = pd.DataFrame({"config": ["base", "a", "a", "b", "c"], "lambda": [None, 0.1, 0.1, 0.1, 0.01],
                          "lr": [None, 1e-4, 1e-4, 1e-5, 1e-4], "step": [0, 2, 4, 2, 2],
                          "val_accuracy": [0.30, 0.35, 0.40, 0.20, None]})
    sweep = lambda_sweep_table(masks, {("prefix", 0): curve})
    top = sweep[sweep["lambda"] == 0.1].iloc[0]
    assert (top.heads_selected, top.heads_total, top.neurons_selected) == (3, 8, 5)
    assert top.percent_heads == pytest.approx(37.5) and top.percent_neurons == pytest.approx(5.0)
    assert top.val_gain == pytest.approx(10.0) and (top.best_lr, top.best_step) == (1e-4, 4)
    assert pd.isna(sweep[sweep["lambda"] == 0.01].iloc[0].val_gain)     # never validated
    assert list(lambda_sweep_table(masks, {})["val_gain"].isna()) == [True, True]   # no update yet


def test_findings_say_gain_and_whether_the_dcm_mask_beats_the_random_one():
    from cca.evaluate.study import findings

    table = pd.DataFrame([
        {"configuration": "cca-prefix-mask", "percent_components": 1.2, "seeds": 3, "updated_seeds": 3,
         "test_delta": 4.0, "test_delta_lo": 1.0, "test_delta_hi": 7.0},
        {"configuration": "cca-branching-mask", "percent_components": 3.5, "seeds": 3, "updated_seeds": 1,
         "test_delta": 0.5, "test_delta_lo": -2.0, "test_delta_hi": 3.0},
        {"configuration": "cca-branching-random", "percent_components": 3.5, "seeds": 3, "updated_seeds": 1,
         "test_delta": 0.0, "test_delta_lo": -1.0, "test_delta_hi": 1.0}])
    lines = findings(table, {"prefix": {"diff": 3.0, "lo": 0.5, "hi": 5.5},
                             "branching": {"diff": 0.5, "lo": -1.5, "hi": 2.5}})
    assert len(lines) == 2
    assert "**gains**" in lines[0] and "1.20% of components (at most 2%" in lines[0]
    assert "beats the random mask" in lines[0]
    assert "no detectable change" in lines[1] and "more than 2%" in lines[1] and "1 of 3 seeds" in lines[1]
    assert "not distinguishable from the random mask" in lines[1]
    assert "No random-mask control" in findings(table, {})[0]


def test_deviations_list_each_default_against_the_reference():
    from cca.config import model_settings, load_config
    from cca.evaluate.study import deviations

    cfg = load_config("config.yaml")
    rows = {d["setting"]: d for d in deviations(model_settings(cfg, "gemma-3-270m"))}
    assert rows["dcm.early_stop_from"]["value"] == "half_selected" and not rows["dcm.early_stop_from"]["as_reference"]
    assert rows["update.base_candidate"]["value"] is True and rows["update.base_candidate"]["reference"] is False
    assert rows["template_filter.instances"]["value"] == "train"
