import pytest

from cca.errors import CCAError
from cca.tasks.prompting import (Choice, build_prompt, extract_answer, extract_choice, gold_answer, gold_answers,
                                 gsm8k_solution_to_cot, is_correct, load_exemplars, truncate_completion)
from cca.config import ROOT

EXEMPLAR = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
            "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                      "altogether in April and May.\n#### 72"}


def test_solution_to_cot_strips_calculator_and_final_line():
    cot = gsm8k_solution_to_cot(EXEMPLAR["answer"])
    assert cot == ("Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. "
                   "The final answer is 72.")


def test_prompt_layout_ends_with_cue():
    p = build_prompt("Tom has 3 apples. How many?", [EXEMPLAR, EXEMPLAR])
    assert p.startswith("As an expert problem solver, solve step by step the following mathematical questions.\n\n")
    assert p.count("Q: ") == 3
    assert p.endswith("Q: Tom has 3 apples. How many?\nA: Let's think step by step.")
    assert "A: Let's think step by step. Natalia sold" in p


def test_paper_prompt_uses_eight_gsm8k_exemplars():
    ex = load_exemplars(ROOT / "resources/gsm8k/train.jsonl", [0, 1, 4, 6, 12, 14, 16, 19])
    p = build_prompt("Q?", ex)
    assert p.count("The final answer is") == 8


def test_exemplar_index_out_of_range_names_file():
    with pytest.raises(CCAError, match="train.jsonl"):
        load_exemplars(ROOT / "resources/gsm8k/train.jsonl", [10**6])


# Completions shaped like gemma-3-270m's real outputs (see FINDINGS): arithmetic slips, a
# following question, decimals, currency, thousands separators.
@pytest.mark.parametrize("completion,expected", [
    (" She has 13 + 12 = 21 apples. The final answer is 21.\n\nQ: Tom has", 21.0),
    (" She loses 5, so she has 5 - 5 = 0. The final answer is 0.", 0.0),
    (" The price is 65 / 2 = 32.5. The final answer is 32.5.", 32.5),  # reference code yields 32
    (" He pays $1,250.50 in total. The final answer is $1,250.50.", 1250.5),
    (" The final answer is 5 + 3 = 8.", 8.0),
    (" The final answer is -4.", -4.0),
    (" The final answer is 10%.\nQ: next", 10.0),
    (" So the answer is 7", 7.0),
    (" 3 + 4 = 7.\nQ: A farmer has 9 cows. The final answer is 9.", None),  # answer only after next question
    (" I don't know.", None),
    (" The final answer is .5.", 0.5),
])
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_truncate_completion():
    assert truncate_completion(" a b\n\nQ: c") == " a b\n\n"
    assert truncate_completion(" no question") == " no question"


def test_is_correct():
    assert is_correct(32.5, 32.5)
    assert is_correct(32.0, "32")
    assert not is_correct(32.0, 32.5)
    assert not is_correct(None, 1)
    assert not is_correct(float("nan"), 1)


@pytest.mark.parametrize("completion,expected", [
    (" Plants need light. The answer is (B).\n\nQ: next", "B"),
    (" The final answer is C.", "C"),
    (" So the answer is D because it is warm.", "D"),
    (" The answer is A, then B.", "A"),                                 # the first letter of the sentence
    (" Light is energy.\nThe answer is B.", "B"),
    (" The answer is light.", None),                                   # no standalone capital letter
    (" It is B.", None),                                               # no 'answer is' sentence
    (" 3.5 is right.\nQ: x. The answer is A.", None),                  # answer only after the next question
])
def test_extract_choice(completion, expected):
    assert extract_choice(completion) == expected


def test_gold_answers_follow_the_answer_format():
    import pandas as pd

    assert gold_answer(2.0, "choice") == Choice("C") and gold_answer(2.0, None) == 2.0
    assert gold_answer(2.5, "number") == 2.5
    numeric = pd.DataFrame({"answer_value": [1.0, 2.5]})
    assert gold_answers(numeric) == [1.0, 2.5]
    mixed = pd.DataFrame({"answer_value": [0.0, 3.0], "answer_format": ["choice", "number"]})
    assert gold_answers(mixed) == [Choice("A"), 3.0]


class _Decoder:
    """A tokenizer whose ids are the characters' code points."""
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize("text,gold,expected", [
    (" The answer is (B).", Choice("B"), (1.0, True)),
    (" The answer is (B).", Choice("C"), (1.0, False)),
    (" The answer is unclear.", Choice("A"), (None, False)),
    (" The answer is 12.", 12.0, (12.0, True)),
])
def test_score_reads_a_letter_for_a_choice_and_a_number_otherwise(text, gold, expected):
    from cca.traces.build import score

    ids = [ord(c) for c in text]
    assert score(_Decoder(), ids[:5], ids[5:], gold) == expected


def test_a_multiple_choice_exemplar_is_laid_out_as_the_questions_are(tmp_path):
    import json

    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps({"question": "What do plants need?", "choices": ["rock", "light"],
                                "answer": "Plants make food from light.\n#### B"}) + "\n")
    ex = load_exemplars(path, [0])
    assert ex[0]["question"] == "What do plants need?\nA. rock\nB. light"
    prompt = build_prompt("Q2\nA. x\nB. y", ex)
    assert "Plants make food from light. The final answer is B.\n" in prompt
    assert extract_choice(" Plants make food from light. The final answer is B.") == "B"
