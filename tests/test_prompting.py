import pytest

from cca.errors import CCAError
from cca.tasks.prompting import (build_prompt, extract_answer, gsm8k_solution_to_cot, is_correct, load_exemplars,
                           truncate_completion)
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
