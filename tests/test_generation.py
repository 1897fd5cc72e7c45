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
