"""A task from a JSONL file of question/answer records instead of a template folder (``tasks.<name>.records``).

One record per line: ``{"question": ..., "answer": ...}``, with optional ``"id"`` (unique) and ``"group"``.
``answer`` is a number, a numeric string ("1,250.5", "$12", "3/4"), or a GSM8K-style solution that ends in
``#### <number>`` (its text is kept as the record's solution). A multiple-choice record also has ``"choices"``
(a list of 2-26 strings, appended to the question as ``A. ...`` lines) and its ``answer`` is the letter, the
0-based index or the text of the right choice, or a solution ending in ``#### <letter>``; it is scored by the letter the model names
(cca.tasks.prompting.extract_choice). The records of a group play the role of a
template's instances (splits, the template filter and the per-template mean are per group; without
``"group"`` every record is in one group ``all``). The table has the columns of a drawn template set
(``cca.templates.instances_frame``), so every later stage runs on it unchanged.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from cca.errors import CCAError
from cca.tasks.prompting import LETTERS, choice_question

_NUMBER = re.compile(r"^[-+]?\$?\s*(\d[\d,]*(\.\d+)?|\.\d+)(\s*/\s*\d+)?\s*%?$")


def numeric_answer(answer) -> tuple[float, str, str]:
    """(value, solution, answer text) of a record's answer; ValueError when it holds no number this task can
    score."""
    if isinstance(answer, bool):
        raise ValueError("a boolean is not a numeric answer")
    if isinstance(answer, (int, float)):
        if not math.isfinite(answer):
            raise ValueError(f"{answer} is not a finite number")
        return float(answer), "", str(answer)
    if not isinstance(answer, str):
        raise ValueError(f"answer of type {type(answer).__name__}")
    solution = ""
    text = answer.strip()
    if "####" in text:
        solution, text = text, text.rpartition("####")[2].strip()
    m = _NUMBER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a number")
    cleaned = text.replace("$", "").replace(",", "").replace("%", "").replace(" ", "")
    value = float(Fraction(cleaned)) if "/" in cleaned else float(cleaned)
    return value, solution, text


def choice_answer(answer, choices) -> int:
    """The index of a multiple-choice record's right choice from its answer: a letter, an index or the text of
    one of ``choices``; ValueError otherwise."""
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS) or \
            not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError(f"choices must be a list of 2 to {len(LETTERS)} non-empty strings")
    if isinstance(answer, bool):
        raise ValueError("a boolean is not a choice")
    if isinstance(answer, str) and "####" in answer:      # a solution ending in '#### <letter>'
        answer = answer.rpartition("####")[2]
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and answer.strip() in LETTERS[:len(choices)] and len(answer.strip()) == 1:
        index = LETTERS.index(answer.strip())
    elif isinstance(answer, str) and answer.strip() in [c.strip() for c in choices]:
        index = [c.strip() for c in choices].index(answer.strip())
    else:
        raise ValueError(f"{answer!r} is neither a letter A-{LETTERS[len(choices) - 1]}, an index nor one of the "
                         "choices")
    if not 0 <= index < len(choices):
        raise ValueError(f"index {index} is outside the {len(choices)} choices")
    return index


def read_records(path: str | Path) -> list[dict]:
    """The records of a JSONL task file, validated; errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise CCAError(f"task records {p} do not exist: check tasks.<task>.records in config.yaml")
    records, ids = [], {}
    for n, line in enumerate(p.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        where = f"{p} line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise CCAError(f"{where}: not a JSON object ({e.msg}): write one record per line") from e
        if not isinstance(rec, dict):
            raise CCAError(f"{where}: not a JSON object: write one {{\"question\", \"answer\"}} record per line")
        for key in ("question", "answer"):
            if key not in rec or rec[key] is None or (isinstance(rec[key], str) and not rec[key].strip()):
                raise CCAError(f"{where}: the record has no {key}: give every record a question and an answer")
        question, answer_format = str(rec["question"]), "number"
        if "choices" in rec:
            try:
                index = choice_answer(rec["answer"], rec["choices"])
            except ValueError as e:
                raise CCAError(f"{where}: the multiple-choice answer cannot be scored ({e}): give the right "
                               "choice's letter, index or text") from None
            solution = rec["answer"].strip() if isinstance(rec["answer"], str) and "####" in rec["answer"] else ""
            value, text, answer_format = float(index), LETTERS[index], "choice"
            question = choice_question(question, rec["choices"])
        else:
            try:
                value, solution, text = numeric_answer(rec["answer"])
            except ValueError as e:
                raise CCAError(f"{where}: the answer cannot be scored ({e}): give a number, or a solution that "
                               "ends in '#### <number>'") from None
        rid = str(rec.get("id", len(records)))
        if rid in ids:
            raise CCAError(f"{where}: id {rid!r} is also the id of line {ids[rid]}: ids must be unique")
        ids[rid] = n
        records.append({"id": rid, "group": str(rec.get("group", "all")), "question": question,
                        "answer": text, "answer_value": value, "solution": solution, "answer_format": answer_format})
    if not records:
        raise CCAError(f"task records {p} hold no record")
    return records


def records_frame(records: list[dict], set_name: str, per_group: int, seed: int, source: str = "the records"
                  ) -> pd.DataFrame:
    """``per_group`` records of every group, drawn with ``seed`` (a group's draw depends on it and the seed
    only), as an instance table: template_id ``<set_name>/<group>``, instance_id ``<template_id>#<id>``; with an
    ``answer_format`` column (number | choice) when any record is multiple-choice."""
    rows = []
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    for group, members in sorted(groups.items()):
        if len(members) < per_group:
            raise CCAError(f"{source}: group {group!r} has {len(members)} records but instances.per_template is "
                           f"{per_group}: lower it (and the split sizes) or add records")
        rng = np.random.default_rng([seed, zlib.crc32(group.encode())])   # as cca.tasks.splits seeds a template
        chosen = sorted(rng.choice(len(members), size=per_group, replace=False).tolist())
        template_id = f"{set_name}/{group}"
        for index in chosen:
            r = members[index]
            rows.append({"template_id": template_id, "instance_id": f"{template_id}#{r['id']}", "index": index,
                         "question": r["question"], "solution": r["solution"], "answer": r["answer"],
                         "answer_value": r["answer_value"], "variables": "{}", "answer_format": r["answer_format"]})
    columns = ["template_id", "instance_id", "index", "question", "solution", "answer", "answer_value", "variables"]
    if any(r["answer_format"] == "choice" for r in records):
        columns.append("answer_format")
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({"index": "int64", "answer_value": "float64"})
