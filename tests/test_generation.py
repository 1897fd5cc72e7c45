import pytest
import torch

from cca.errors import CCAError
from cca.traces.generation import HFBackend, SamplingSpec, canonical_completion, check_lengths
from cca.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model("llama", seed=0)


def test_canonical_cut_at_stop_string(tiny):
    _, tok = tiny
    ids = tok(" 3 + 4 = 7. The final answer is 7.\n\nQ: Next question").input_ids
    c = canonical_completion(tok, ids, ("Q:",), {tok.eos_token_id}, 100)
    assert c.finish_reason == "stop"
    assert c.text == " 3 + 4 = 7. The final answer is 7.\n\n"
    assert "Q:" in tok.decode(c.token_ids) and "Q:" not in tok.decode(c.token_ids[:-1])


def test_canonical_cut_at_eos_and_length(tiny):
    _, tok = tiny
    ids = tok(" 7.").input_ids
    c = canonical_completion(tok, ids + [tok.eos_token_id] + ids, ("Q:",), {tok.eos_token_id}, 100)
    assert c.token_ids == tuple(ids + [tok.eos_token_id]) and c.text == " 7." and c.finish_reason == "stop"
    c = canonical_completion(tok, ids * 5, ("Q:",), {tok.eos_token_id}, 4)
    assert len(c.token_ids) == 4 and c.finish_reason == "length"


def test_hf_greedy_matches_a_manual_argmax_loop(tiny):
    model, tok = tiny
    prompt = tok("Q: Tom has 3 apples.\nA: Let's think step by step.").input_ids
    backend = HFBackend(model, tok, batch_size=2)
    [[c]] = backend.generate([prompt], SamplingSpec(max_new_tokens=8))
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(c.token_ids)):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert tuple(ids[len(prompt):]) == c.token_ids


def test_hf_batching_and_padding_do_not_change_greedy(tiny):
    model, tok = tiny
    prompts = [tok(q).input_ids for q in ("Q: a", "Q: Tom has 3 apples and 4 pears. How many?", "Q: 5+5?")]
    spec = SamplingSpec(max_new_tokens=6)
    batched = HFBackend(model, tok, batch_size=3).generate(prompts, spec)
    single = [HFBackend(model, tok, batch_size=1).generate([p], spec)[0] for p in prompts]
    assert [b[0].token_ids for b in batched] == [s[0].token_ids for s in single]


def test_hf_sampling_returns_n_and_is_seeded(tiny):
    model, tok = tiny
    prompt = tok("Q: Tom has 3 apples.").input_ids
    spec = SamplingSpec(max_new_tokens=6, temperature=1.0, n=4)
    a = HFBackend(model, tok, seed=1).generate([prompt], spec)
    b = HFBackend(model, tok, seed=1).generate([prompt], spec)
    assert len(a[0]) == 4 and [c.token_ids for c in a[0]] == [c.token_ids for c in b[0]]
    assert len({c.token_ids for c in a[0]}) > 1


def test_prompt_longer_than_context_is_refused():
    with pytest.raises(CCAError, match="prompt of gsm-mini/0003#7 has 4000 tokens"):
        check_lengths([[1] * 4000], ["gsm-mini/0003#7"], 128, 4096)


def test_seeded_samples_do_not_depend_on_the_other_prompts_their_order_or_the_batch_size(tiny):
    model, tok = tiny
    prompts = [tok(q).input_ids for q in ("Q: a", "Q: Tom has 3 apples and 4 pears. How many?", "Q: 5+5?")]
    seeds = ((11, 12), (21, 22), (31, 32))

    def spec(s):
        return SamplingSpec(max_new_tokens=6, temperature=1.0, n=2, seeds=s)

    together = HFBackend(model, tok, batch_size=6, seed=0).generate(prompts, spec(seeds))
    reordered = HFBackend(model, tok, batch_size=4, seed=5).generate(prompts[::-1], spec(seeds[::-1]))[::-1]
    alone = [HFBackend(model, tok, batch_size=1, seed=9).generate([p], spec((s,)))[0] for p, s in zip(prompts, seeds)]
    ids = lambda out: [[c.token_ids for c in cs] for cs in out]  # noqa: E731
    assert ids(together) == ids(reordered) == ids(alone)
    assert len({c for cs in ids(together) for c in cs}) > 3       # the seeds draw different samples
    other = HFBackend(model, tok).generate(prompts[:1], spec(((13, 14),)))
    assert ids(other) != ids(together[:1])


def test_seeded_sampling_draws_from_the_softmax_and_its_nucleus(tiny):
    """The Gumbel-max rule: the first sampled token's frequencies over many seeds match softmax(logits / T),
    and with top_p only tokens of the nucleus are drawn."""
    from cca.traces.generation import seeded_sampling

    model, tok = tiny
    prompt = tok("Q: Tom has 3 apples.").input_ids
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1].float()
    temperature, draws = 0.7, 4000
    probs = (logits / temperature).softmax(-1)
    sampler = seeded_sampling(range(draws), temperature, 1.0)
    picks = sampler(None, logits.expand(draws, -1)).argmax(-1)
    freq = torch.bincount(picks, minlength=len(probs)).float() / draws
    top = probs.argsort(descending=True)[:5]
    # binomial standard error at 4000 draws is at most 0.008
    assert torch.allclose(freq[top], probs[top], atol=0.03), (freq[top], probs[top])
    nucleus_p = 0.5
    ordered = probs.sort(descending=True).values
    nucleus = int((ordered.cumsum(-1) - ordered < nucleus_p).sum())
    picks = seeded_sampling(range(500), temperature, nucleus_p)(None, logits.expand(500, -1)).argmax(-1)
    assert set(picks.tolist()) <= set(probs.argsort(descending=True)[:nucleus].tolist())


def test_sample_seeds_are_a_function_of_run_seed_item_and_index():
    from cca.traces.generation import sample_seed

    assert sample_seed(0, "gsm-mini/0001#3", 2) == sample_seed(0, "gsm-mini/0001#3", 2)
    seeds = {sample_seed(s, i, j) for s in (0, 1) for i in ("a", "b") for j in range(4)}
    assert len(seeds) == 16 and all(0 <= x < 2**31 for x in seeds)
    with pytest.raises(ValueError, match="2 seeds per prompt"):
        SamplingSpec(max_new_tokens=4, temperature=1.0, n=2, seeds=((1,),))
