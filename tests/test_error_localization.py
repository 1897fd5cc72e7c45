"""A hand-built pair whose pivots are known, run through the dataset builder with a scripted model."""
import pandas as pd
import pytest

from cca.localize.dataset import localize, pairs_table, summary
from cca.traces.generation import Completion
from cca.models.tiny import build_tokenizer
from cca.traces.build import base_accuracy, opposite_traces


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


class ScriptedModel:
    """Greedy 'model' over token ids: once the trace holds '7 + 5' it heads for 12, else for 11."""

    def __init__(self, tok, prompt):
        self.tokenizer, self.prompt = tok, list(prompt)
        enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
        self.A = enc(" She has 7 +")
        self.B5 = enc(" 5 = 12. The final answer is 12.\n\nQ:")
        self.B4 = enc(" 4 = 11. The final answer is 11.\n\nQ:")
        self.greedy = enc(" Ann has 7 +") + self.B4
        self.opposite = self.A + self.B5
        assert self.greedy[0] != self.opposite[0] and self.B5[0] != self.B4[0]
        self.calls = 0

    def continuation(self, y):
        right, wrong = self.A + self.B5, self.A + self.B4
        if y[:len(self.A) + 1] == right[:len(self.A) + 1]:
            return right[len(y):]
        if y == wrong[:len(y)]:
            return wrong[len(y):]
        assert y == self.greedy[:len(y)], "the test only asks for prefixes of its two traces"
        return self.greedy[len(y):]

    def generate(self, prompts, spec):
        out = []
        for p in prompts:
            self.calls += 1
            assert list(p[:len(self.prompt)]) == self.prompt
            ids = self.continuation(list(p[len(self.prompt):]))[:spec.max_new_tokens]
            out.append([Completion(tuple(ids), self.tokenizer.decode(ids), "stop")] * spec.n)
        return out


def _pair(model, prompt):
    greedy = pd.DataFrame([{"instance_id": "t/0#0", "template_id": "t/0", "prompt_ids": list(prompt),
                            "completion_ids": model.greedy, "answer_value": 12.0, "correct": False,
                            "error": None}])
    opposite = pd.DataFrame([{"instance_id": "t/0#0", "template_id": "t/0", "greedy_correct": False,
                              "found": True, "samples_drawn": 1, "opposite_ids": model.opposite,
                              "opposite_text": model.tokenizer.decode(model.opposite), "opposite_prediction": 12.0,
                              "opposite_correct": True, "error": None}])
    return greedy, opposite


@pytest.mark.parametrize("search", ["scan", "bisect"])
def test_branching_finds_the_operand_prefix_finds_the_name(tok, search):
    prompt = tok("Q: Ann has 7 apples and gets 5 more. How many?\nA: Let's think step by step.").input_ids
    model = ScriptedModel(tok, prompt)
    greedy, opposite = _pair(model, prompt)
    pairs = pairs_table(greedy, opposite)

    pre = localize(pairs, "prefix", tok, None, max_new_tokens=64, search=search, batch=4, bisect_points=1).iloc[0]
    assert pre.status == "ok" and pre.pivot_position == 0
    assert (pre.desired_id, pre.undesired_id) == (model.opposite[0], model.greedy[0])
    assert list(pre.prefix_ids) == list(prompt)  # the intervention token is the prompt's last

    br = localize(pairs, "branching", tok, model, max_new_tokens=64, search=search, batch=4, bisect_points=1).iloc[0]
    k = len(model.A)
    assert br.status == "ok" and br.pivot_position == k
    assert (br.desired_id, br.undesired_id) == (model.B5[0], model.B4[0])
    assert list(br.prefix_ids) == list(prompt) + model.A
    assert br.prefix_text.endswith("She has 7 +")
    assert br.desired_text.strip().startswith("5") and br.undesired_text.strip().startswith("4")
    assert 1 <= br.completions <= k + 4


def test_no_opposite_trace_is_counted_not_dropped(tok):
    greedy = pd.DataFrame([{"instance_id": f"t/0#{i}", "template_id": "t/0", "prompt_ids": [1, 2],
                            "completion_ids": [3], "answer_value": 1.0 if i == 0 else 2.0, "correct": i == 0,
                            "error": None}
                           for i in range(3)])
    acc = base_accuracy(greedy, greedy[["instance_id"]].assign(split="train"), "train", 0.8)
    assert acc.loc[0, "accuracy"] == pytest.approx(1 / 3) and bool(acc.loc[0, "train_eligible"])

    class Never:
        tokenizer = tok

        def generate(self, prompts, spec):
            # always repeats the greedy answer's correctness: "1" is right for #0, wrong for the rest
            text = " The final answer is 1."
            ids = tuple(tok(text, add_special_tokens=False).input_ids)
            return [[Completion(ids, text, "stop")] * spec.n for _ in prompts]

    opp = opposite_traces(Never(), greedy, greedy[["instance_id"]], num_samples=4, temperature=1.0, top_p=1.0,
                          max_new_tokens=8, round_size=2)
    assert len(opp) == 3 and not opp["found"].any() and (opp["samples_drawn"] == 4).all()
    s = summary(len(opp), opp, {"prefix": localize(pairs_table(greedy, opp), "prefix", tok, None, 8, "scan", 8, None)}, {})
    assert s["no_opposite_trace"] == 3 and s["pairs_found"] == 0 and s["methods"]["prefix"]["pivots_found"] == 0


def test_a_stage_where_every_instance_fails_stops(tok):
    from cca.errors import CCAError

    greedy = pd.DataFrame([{"instance_id": "t/0#0", "template_id": "t/0", "prompt_ids": [1, 2],
                            "completion_ids": [3], "answer_value": 1.0, "correct": False, "error": None}])

    class Broken:
        tokenizer = tok

        def generate(self, prompts, spec):
            raise TypeError("Object of type int64 is not serializable")

    with pytest.raises(CCAError, match="failed for all 1 instances; first error: TypeError"):
        opposite_traces(Broken(), greedy, greedy[["instance_id"]], 2, 1.0, 1.0, 8)
