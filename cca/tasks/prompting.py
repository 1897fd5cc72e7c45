"""Few-shot chain-of-thought prompts, answer extraction and exact match.

The prompt follows the paper's reference code: a raw-text header, k worked
exemplars as ``Q: ...\\nA: Let's think step by step. ... The final answer is N.``,
then ``Q: <question>\\nA: Let's think step by step.`` (no chat template).

Answer extraction differs from the reference on purpose: the reference cuts at
the first ``answer is[^.]*\\.`` and so turns ``32.5.`` into ``32``; here a
period only ends the answer sentence when no digit follows it.

A multiple-choice question's gold answer is a ``Choice`` (its letter); its prediction is the first standalone
capital letter of the same 'answer is ...' sentence, kept in the tables as the letter's index (A = 0).
``gold_answer`` makes the gold of a table row: a ``Choice`` where the row's ``answer_format`` is ``choice``, the
number otherwise (a table without that column holds numeric answers).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cca.errors import CCAError

DEFAULT_HEADER = "As an expert problem solver, solve step by step the following mathematical questions."
ANSWER_CUE = "Let's think step by step."
QUESTION_MARK = "Q:"

_CALCULATOR = re.compile(r"<<[^>]*>>")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
# "answer is" followed by anything up to a sentence-ending period (a period not followed by a digit),
# a newline, or the end of the text.
_ANSWER_SENTENCE = re.compile(r"answer is(.*?)(?:\.(?!\d)|\n|$)", re.IGNORECASE | re.DOTALL)
_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def gsm8k_solution_to_cot(answer: str) -> str:
    """GSM8K solution text -> one-line chain of thought ending 'The final answer is N.'.

    Calculator annotations ``<<a*b=c>>`` are removed and the ``#### N`` line becomes the final sentence.
    """
    if "####" not in answer:
        raise CCAError(f"exemplar solution has no '#### <answer>' line: {answer[:80]!r}")
    body, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    steps = [line.strip() for line in _CALCULATOR.sub("", body).splitlines() if line.strip()]
    text = " ".join(steps)
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return f"{text} The final answer is {final}.".strip()


def load_exemplars(path: str | Path, indices: Sequence[int]) -> list[dict]:
    """Read the exemplars at ``indices`` (0-based lines) of a GSM8K-style JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise CCAError(f"exemplar file {path} does not exist: check tasks.<task>.exemplars.file in config.yaml")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i in indices:
        if not 0 <= i < len(rows):
            raise CCAError(f"exemplar index {i} is out of range for {path} ({len(rows)} rows): "
                           "fix tasks.<task>.exemplars.indices in config.yaml")
        question = rows[i]["question"].strip()
        if "choices" in rows[i]:       # a multiple-choice exemplar, laid out as the task's questions are
            question = choice_question(question, rows[i]["choices"])
        out.append({"question": question, "answer": rows[i]["answer"]})
    return out


def choice_question(question: str, choices: Sequence[str]) -> str:
    """A multiple-choice question with its choices as lettered lines ('A. ...')."""
    return "\n".join([question.strip()] + [f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices)])


def build_prompt(question: str, exemplars: Iterable[dict], header: str = DEFAULT_HEADER) -> str:
    """The few-shot prompt for ``question``; generation continues right after 'step by step.'."""
    parts = [header.strip(), ""] if header else []
    for ex in exemplars:
        parts.append(f"{QUESTION_MARK} {ex['question'].strip()}\nA: {ANSWER_CUE} {gsm8k_solution_to_cot(ex['answer'])}\n")
    parts.append(f"{QUESTION_MARK} {question.strip()}\nA: {ANSWER_CUE}")
    return "\n".join(parts)


def truncate_completion(text: str) -> str:
    """Cut a completion where the model starts the next question ('Q:')."""
    cut = text.find(QUESTION_MARK)
    return text if cut < 0 else text[:cut]


def parse_number(text: str) -> float | None:
    """The last number in ``text`` ('$1,250.50' -> 1250.5), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def extract_answer(completion: str) -> float | None:
    """The predicted number: the last number of the first 'answer is ...' sentence of the completion.

    Decimal-safe ('The final answer is 32.5.' -> 32.5) and blind to anything after the next 'Q:'.
    Returns None when the completion states no answer.
    """
    text = truncate_completion(completion)
    match = _ANSWER_SENTENCE.search(text)
    if match is None:
        return None
    return parse_number(match.group(1))


@dataclass(frozen=True)
class Choice:
    """The gold answer of a multiple-choice question."""
    letter: str


def extract_choice(completion: str) -> str | None:
    """The predicted letter: the first standalone capital letter of the first 'answer is ...' sentence
    ('The final answer is (B).' -> 'B'); None when the completion states no answer."""
    match = _ANSWER_SENTENCE.search(truncate_completion(completion))
    if match is None:
        return None
    letter = _LETTER.search(match.group(1))
    return letter.group(1) if letter else None


def gold_answer(answer_value, answer_format=None):
    """The gold answer of a table row: ``Choice`` of the letter at index ``answer_value`` for ``choice``, else
    the number (``answer_format`` None or missing: a numeric answer)."""
    if answer_format == "choice":
        return Choice(LETTERS[int(answer_value)])
    return float(answer_value)


def gold_answers(table) -> list:
    """``gold_answer`` of every row of a table with ``answer_value`` (and, for a multiple-choice task,
    ``answer_format``)."""
    formats = table["answer_format"] if "answer_format" in table.columns else [None] * len(table)
    return [gold_answer(v, f) for v, f in zip(table["answer_value"], formats)]


def is_correct(prediction: float | None, gold: float, rel_tol: float = 1e-6) -> bool:
    """Exact match on the numeric value (float tolerance only for representation noise)."""
    if prediction is None or math.isnan(prediction):
        return False
    return math.isclose(prediction, float(gold), rel_tol=rel_tol, abs_tol=1e-9)
