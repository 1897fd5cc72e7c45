"""The controls of the results table: the random mask, the chosen lambda it copies, the body-only update, the
squared-gradient shares by parameter group, and the variant registry they are listed in."""
import pandas as pd
import pytest
import torch

from cca.errors import CCAError
from cca.models.tiny import build_tiny_model


def _source_mask():
    """A mask of the tiny models' sites: some heads and neurons per (layer, kind), one site empty, one full."""
    sel = {f"layers.{i}.{k}": torch.zeros(n, dtype=torch.bool) for i in range(2)
           for k, n in (("q", 4), ("k", 2), ("v", 2), ("mlp", 256))}
    sel["layers.0.q"][[0, 3]] = True
    sel["layers.1.k"][:] = True
    sel["layers.0.mlp"][:40] = True
    sel["layers.1.mlp"][100:107] = True
    return sel


def test_random_mask_keeps_every_sites_count_and_moves_the_components():
    from cca.circuits.random_mask import random_mask, site_counts

    source = _source_mask()
    drawn = random_mask(source, seed=5)
    assert set(drawn) == set(source)
    assert all(drawn[k].shape == source[k].shape and drawn[k].dtype == torch.bool for k in source)
    assert site_counts(drawn) == site_counts(source)
    assert torch.equal(drawn["layers.1.k"], source["layers.1.k"])        # a full site stays full
    assert not drawn["layers.1.q"].any()                                # an empty one stays empty
    # 40 of 256 neurons in the first 40 places again has probability 1 / C(256, 40): a different draw
    assert not torch.equal(drawn["layers.0.mlp"], source["layers.0.mlp"])
    assert not torch.equal(drawn["layers.1.mlp"], source["layers.1.mlp"])


def test_random_mask_is_fixed_by_its_seed_and_not_by_the_sites_order():
    from cca.circuits.random_mask import random_mask, random_mask_seed

    source = _source_mask()
    again = random_mask(dict(reversed(list(source.items()))), seed=5)
    assert all(torch.equal(random_mask(source, seed=5)[k], again[k]) for k in source)
    other = random_mask(source, seed=6)
    assert not torch.equal(other["layers.0.mlp"], again["layers.0.mlp"])
    assert random_mask_seed(0) == random_mask_seed(0) != random_mask_seed(1)
    assert random_mask_seed(0) != 0


def test_chosen_lambda_is_the_chosen_candidates():
    from cca.update.sweep import chosen_lambda

    curve = [{"config": "base", "lambda": None, "val_accuracy": 0.4},
             {"config": "lambda=0.01 lr=0.001", "lambda": 0.01, "val_accuracy": 0.6}]
    assert chosen_lambda({"config": "lambda=0.001 lr=0.001", "lambda": 0.001, "val_accuracy": 0.5}, curve) == 0.001


def test_chosen_lambda_after_the_base_model_is_the_best_validated_candidates_first_on_a_tie():
    from cca.update.sweep import chosen_lambda

    nan = float("nan")
    # as curve.parquet reads back: the base row's lambda and unvalidated steps are NaN
    curve = pd.DataFrame([
        {"config": "base", "lambda": nan, "lr": nan, "step": 0, "val_accuracy": 0.9},
        {"config": "lambda=0.1 lr=0.001", "lambda": 0.1, "lr": 1e-3, "step": 1, "val_accuracy": nan},
        {"config": "lambda=0.1 lr=0.001", "lambda": 0.1, "lr": 1e-3, "step": 2, "val_accuracy": 0.3},
        {"config": "lambda=0.01 lr=0.001", "lambda": 0.01, "lr": 1e-3, "step": 2, "val_accuracy": 0.5},
        {"config": "lambda=0.01 lr=0.01", "lambda": 0.01, "lr": 1e-2, "step": 2, "val_accuracy": 0.2},
        {"config": "lambda=0.001 lr=0.001", "lambda": 0.001, "lr": 1e-3, "step": 2, "val_accuracy": 0.5},
    ]).to_dict("records")
    base = {"config": "base", "lambda": None, "step": 0, "val_accuracy": 0.9}
    assert chosen_lambda(base, curve) == 0.01
    curve[5]["val_accuracy"] = 0.7
    assert chosen_lambda(base, curve) == 0.001
    with pytest.raises(CCAError, match="validated no candidate"):
        chosen_lambda(base, [r | {"val_accuracy": nan} if r["config"] != "base" else r for r in curve])


def _untied_llama():
    from transformers import AutoModelForCausalLM

    from cca.models.tiny import build_tokenizer, tiny_config

    config = tiny_config("llama", build_tokenizer())
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny_models():
    return {"llama": build_tiny_model("llama", seed=1)[0], "gemma3": build_tiny_model("gemma3", seed=1)[0],
            "llama-untied": _untied_llama()}


def test_base_candidate_false_keeps_the_best_updated_model_even_below_the_base():
    from cca.update.sweep import choose

    base = {"config": "base", "val_accuracy": 0.5}
    runs = lambda: iter([({"config": "lr0.1", "val_accuracy": 0.2}, [{"row": 1}], "s1"),
                         ({"config": "lr0.01", "val_accuracy": 0.4}, [{"row": 2}], "s2"),
                         ({"config": "lr0.001", "val_accuracy": None}, [], None)])
    rows, best, state = choose(base, runs())
    assert best["config"] == "base" and state is None and rows == [{"row": 1}, {"row": 2}]
    _, best, state = choose(base, runs(), base_candidate=False)
    assert best["config"] == "lr0.01" and state == "s2"
    tie = iter([({"config": "a", "val_accuracy": 0.5}, [], "sa"), ({"config": "b", "val_accuracy": 0.5}, [], "sb")])
    _, best, state = choose(base, tie, base_candidate=False)
    assert state == "sa"                                    # the first on a tie, as with the base model
    _, best, state = choose(base, iter([]), base_candidate=False)
    assert best["config"] == "base" and state is None       # nothing validated: the base model


def test_parameter_groups_find_embedding_head_and_norms_from_the_modules(tiny_models):
    from cca.models.parameter_groups import parameter_groups

    llama = parameter_groups(tiny_models["llama"])
    assert {n for n, g in llama.items() if g == "embedding"} == {"model.embed_tokens.weight"}   # tied: the head too
    assert {n for n, g in llama.items() if g == "norm"} == {
        "model.norm.weight", *(f"model.layers.{i}.{k}.weight" for i in range(2)
                               for k in ("input_layernorm", "post_attention_layernorm"))}
    assert llama["model.layers.1.self_attn.o_proj.weight"] == "attention"
    assert llama["model.layers.0.mlp.down_proj.weight"] == "mlp"
    gemma = parameter_groups(tiny_models["gemma3"])
    assert gemma["model.layers.0.self_attn.q_norm.weight"] == gemma["model.layers.1.pre_feedforward_layernorm.weight"] \
        == "norm"
    assert gemma["model.layers.0.self_attn.q_proj.weight"] == "attention"
    assert "other" not in set(gemma.values()) | set(llama.values())
    untied = parameter_groups(tiny_models["llama-untied"])
    assert untied["lm_head.weight"] == untied["model.embed_tokens.weight"] == "embedding"


def _examples(model, n=4, shared=40, seed=0):
    from cca.update.targeted import Examples

    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    common = torch.randint(5, vocab, (shared,), generator=g).tolist()
    prefixes = [common + torch.randint(5, vocab, (2 + i,), generator=g).tolist() for i in range(n)]
    desired = torch.randint(5, vocab, (n,), generator=g).tolist()
    return Examples(prefixes, desired, [(d + 1) % vocab for d in desired])


class _Steps:
    """Validation that prefers later looks, so that the last trained step is chosen."""

    def __init__(self):
        self.calls = 0

    def __call__(self, write):
        self.calls += 1
        return {"template_mean": float(self.calls), "mean": float(self.calls)}


@pytest.mark.parametrize("name", ["llama", "gemma3", "llama-untied"])
def test_body_only_update_leaves_embedding_head_and_norms_bit_identical(tiny_models, name):
    from cca.config import profile_section
    from cca.layout import VARIANTS
    from cca.models.components import component_map
    from cca.models.parameter_groups import names_in, parameter_groups
    from cca.update.config import UpdateConfig
    from cca.update.sweep import choose, update_runs
    from cca.update.validation import host_copy

    model = tiny_models[name]
    groups = parameter_groups(model)
    frozen = names_in(groups, VARIANTS["body"].frozen)
    before = host_copy(model)
    config = UpdateConfig.from_dict(profile_section("update", {"lrs": [0.5], "steps": 3, "eval_steps": [1, 3]}))
    validator = _Steps()
    start = {"config": "base", "lambda": None, "lr": None, "step": 0, "val_accuracy": validator(None)["template_mean"]}
    runs = update_runs(model, component_map(model), _examples(model), [], config, validator, before, frozen)
    _, best, state = choose(start, runs)
    assert best["step"] == 3 and state is not None
    head = "lm_head.weight" if name == "llama-untied" else "model.embed_tokens.weight"
    assert head in frozen and any(groups[n] == "norm" for n in frozen)
    for key, value in state.items():
        if key in frozen or (key == "lm_head.weight" and name != "llama-untied"):   # tied: the embedding's
            assert torch.equal(value, before[key]), key
        elif groups.get(key) in ("attention", "mlp"):
            assert not torch.equal(value, before[key]), key
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # restored after the run


def test_gradient_shares_sum_to_one_over_every_group(tiny_models):
    from cca.models.parameter_groups import GROUPS, gradient_shares, parameter_groups
    from cca.update.targeted import squared_gradients

    model = tiny_models["gemma3"]
    squares = squared_gradients(model, _examples(model), micro_batch=2)
    shares = gradient_shares(squares, parameter_groups(model))
    assert list(shares) == list(GROUPS) and sum(shares.values()) == pytest.approx(1.0)
    assert all(shares[g] > 0 for g in ("embedding", "norm", "attention", "mlp")) and shares["other"] == 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(True)


def test_gradient_shares_of_hand_made_squares():
    from cca.models.parameter_groups import gradient_shares

    groups = {"a": "embedding", "b": "norm", "c": "attention", "d": "mlp"}
    shares = gradient_shares({"a": 1.0, "b": 0.0, "c": 2.0, "d": 1.0}, groups)
    assert shares == {"embedding": 0.25, "norm": 0.0, "attention": 0.5, "mlp": 0.25, "other": 0.0}
    with pytest.raises(CCAError, match="no gradient"):
        gradient_shares({"a": 0.0}, groups)


def test_variant_registry_orders_configurations_and_picks_the_controls():
    from cca.layout import (all_configurations, configurations, control_names, general_configurations, label,
                            run_dir)

    assert control_names() == ["random", "body"]
    assert configurations(["prefix", "branching"], ["body", "random"]) == [
        "original", "cca-prefix-mask", "cca-prefix-nomask", "cca-prefix-random", "cca-prefix-body",
        "cca-branching-mask", "cca-branching-nomask", "cca-branching-random", "cca-branching-body", "lora"]
    assert configurations(["prefix"], []) == ["original", "cca-prefix-mask", "cca-prefix-nomask", "lora"]
    assert configurations(["prefix"], ["body"])[-2] == "cca-prefix-body"
    assert set(all_configurations()) >= {"cca-branching-random", "cca-prefix-body"}
    assert run_dir("cca-prefix-random", 3) == "seed3/prefix/random"
    assert label("cca-branching-random") == "CCA branching, random mask"
    assert label("cca-prefix-body") == "CCA prefix, w/o mask, body only"
    assert general_configurations(["prefix"], [], ["cca-prefix-random", "lora"]) == ["original", "lora"]


def test_every_frozen_group_is_a_parameter_group():
    from cca.layout import VARIANTS
    from cca.models.parameter_groups import GROUPS

    assert all(set(v.frozen) <= set(GROUPS) and not (v.mask and v.frozen) for v in VARIANTS.values())


def test_percent_components_of_the_controls():
    from cca.evaluate.table import component_percent

    random_update = {"best": {"lambda": None}, "masks": {"0.01": {"percent": 3.5, "selected": 7}}}
    assert component_percent(random_update, "cca-prefix-random") == 3.5
    assert component_percent({"trainable_percent": 42.0}, "cca-prefix-body") == 42.0
    assert component_percent({}, "cca-branching-nomask") == 100.0


def test_report_labels_the_controls_and_shows_the_gradient_shares(tmp_path):
    from cca.evaluate.report import render_report
    from cca.evaluate.table import results_table, run_record
    from cca.layout import configurations

    math = {"sets": {"test": {"template_mean": 0.5, "mean": 0.5}}}
    confs = configurations(["prefix"], ["random", "body"])
    records = [run_record(c, 0, math, None if c == "original" else {"chosen": "updated"}, 10, 1.0) for c in confs]
    table = results_table(records)
    assert list(table["configuration"]) == confs
    settings = {"profile": "small", "task": "gsm-mini", "seeds": [0], "localization": {"methods": ["prefix"]}}
    shares = [{"method": "prefix", "seed": 0, "embedding": 0.5, "norm": 0.01, "attention": 0.3, "mlp": 0.19,
               "other": 0.0}]
    report = render_report("m", table, settings, tmp_path, [], shares)
    rows = [ln.split(" | ")[0] for ln in report.splitlines() if ln.startswith("| CCA prefix")]
    assert rows == ["| CCA prefix, w/ mask", "| CCA prefix, w/o mask", "| CCA prefix, random mask",
                    "| CCA prefix, w/o mask, body only"]
    assert "| prefix | 0 | 50.0 | 1.0 | 30.0 | 19.0 | 0.0 |" in report


class _Looks(_Steps):
    """Validation that prefers each candidate's later looks (two looks a candidate)."""

    def __call__(self, write):
        self.calls += 1
        return {"template_mean": float((self.calls - 1) % 2 + 1), "mean": 0.0}


@pytest.mark.parametrize("masked", [True, False])
def test_a_stopped_sweep_resumes_at_its_first_unfinished_candidate(tiny_models, tmp_path, masked):
    """Candidates kept by a job that stopped part way are taken as they were, not trained again; another
    fingerprint (other settings or data) takes none of them."""
    from cca.config import profile_section
    from cca.models.components import component_map
    from cca.update.candidates import CandidateStore
    from cca.update.config import UpdateConfig
    from cca.update.sweep import update_runs
    from cca.update.validation import host_copy

    model = tiny_models["llama"]
    cmap = component_map(model)
    masks = [(0.1, _source_mask())] if masked else []
    config = UpdateConfig.from_dict(profile_section("update", {"lrs": [0.5, 0.05], "steps": 2, "eval_steps": [1, 2]}))
    base = None if masked else host_copy(model)
    ex = _examples(model)

    def sweep(store, validator):
        return list(update_runs(model, cmap, ex, masks, config, validator, base, frozenset(), store))

    whole = sweep(None, _Looks())
    store = CandidateStore(tmp_path / ".candidates", "fingerprint-a")
    stopped = update_runs(model, cmap, ex, masks, config, _Looks(), base, frozenset(), store)
    first = next(stopped)       # the job stops after its first candidate
    stopped.close()
    validator = _Looks()
    resumed = sweep(store, validator)
    assert validator.calls == 2                          # only the second lr was trained (2 looks)
    assert resumed[0][0] == first[0] and resumed[0][1] == first[1]
    for (rec, rows, state), (rec2, rows2, state2) in zip(whole, resumed):
        assert rec == rec2 and rows == rows2
        a, b = (state[0], state2[0]) if masked else (state, state2)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
        if masked:
            assert state[1] == state2[1]
    other = _Looks()
    sweep(CandidateStore(tmp_path / ".candidates", "fingerprint-b"), other)
    assert other.calls == 4
    store.clear()
    assert not (tmp_path / ".candidates").exists()


def test_the_first_seeds_choice_is_its_chosen_candidate_or_its_best_validated_one():
    from types import SimpleNamespace

    from cca.cli.update import only_choice
    from cca.layout import VARIANTS
    from cca.config import profile_section
    from cca.update.config import UpdateConfig
    from cca.update.sweep import chosen_candidate

    curve = [{"config": "base", "lambda": None, "lr": None, "val_accuracy": 0.5},
             {"config": "a", "lambda": 0.1, "lr": 1e-4, "val_accuracy": 0.4},
             {"config": "b", "lambda": 0.05, "lr": 3e-5, "val_accuracy": 0.45},
             {"config": "c", "lambda": 0.05, "lr": 1e-5, "val_accuracy": 0.45}]
    assert chosen_candidate({"config": "a", "lambda": 0.1, "lr": 1e-4}, curve) == (0.1, 1e-4)
    assert chosen_candidate({"config": "base", "lambda": None, "lr": None}, curve) == (0.05, 3e-5)
    nomask = [{"config": "base", "lr": None, "val_accuracy": 0.5}, {"config": "lr=0.001", "lr": 1e-3, "val_accuracy": 0.1}]
    assert chosen_candidate({"config": "base"}, nomask) == (None, 1e-3)
    with pytest.raises(CCAError, match="validated no candidate"):
        chosen_candidate({"config": "base"}, curve[:1])
    config = UpdateConfig.from_dict(profile_section("update", {"lrs": [1e-5, 3e-5, 1e-4], "steps": 2, "eval_steps": [2]}))
    masks = [(0.1, "m1", {}), (0.05, "m2", {})]
    kept, cfg = only_choice(masks, config, (0.05, 3e-5), VARIANTS["mask"], "seed0/update.json")
    assert kept == [(0.05, "m2", {})] and cfg.lrs == [3e-5] and cfg.steps == 2
    kept, cfg = only_choice([], config, (None, 1e-4), VARIANTS["nomask"], "x")
    assert kept == [] and cfg.lrs == [1e-4]
    with pytest.raises(CCAError, match="lambda 0.01"):
        only_choice(masks, config, (0.01, 1e-5), VARIANTS["mask"], "seed0/update.json")
