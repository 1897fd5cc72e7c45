"""Greedy few-shot accuracy of the base model on each gsm-mini template.

Used to calibrate resources/gsm-mini: CCA needs templates that the model
solves sometimes but not always (per-template accuracy mostly in 0.1-0.8).

For every template it draws N instances (cca.templates.draw_instances, fixed
seed), builds the project's 8-shot chain-of-thought prompt
(cca.tasks.prompting.build_prompt with resources/gsm-mini/exemplars.jsonl and the
default header), generates greedily with vLLM (stop at "Q:"), extracts the
number after "The final answer is" (cca.tasks.prompting.extract_answer) and scores
exact match. Prints a per-template table and the mean, and writes the table to
CSV (last row: template "mean").

BOS: the prompt is tokenized here and passed to vLLM as token ids. If the
checkpoint's tokenizer does not add BOS itself, BOS is prepended (with a
warning), because Gemma without BOS is badly degraded; --as-tokenized measures
the checkpoint as-is instead.

The accuracies in resources/gsm-mini/SOURCE.md come from (about 7 min on 2 CPU cores):
    .venv/bin/python benchmarks/gsm_mini_base_accuracy.py \
        results/gsm_mini_base_accuracy.csv -n 20 --seed 0
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cca.tasks.prompting import build_prompt, extract_answer, is_correct, load_exemplars  # noqa: E402
from cca.templates import draw_instances, load_template_set  # noqa: E402


def _template_name(t) -> str:
    """'templates/0007' -> '0007' (the file stem)."""
    return Path(t.path).stem if getattr(t, "path", "") else t.template_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="output CSV path")
    ap.add_argument("--model", default=str(ROOT / "results/gemma-3-270m/checkpoint"))
    ap.add_argument("--templates", default=str(ROOT / "resources/gsm-mini/templates"))
    ap.add_argument("--exemplars", default=str(ROOT / "resources/gsm-mini/exemplars.jsonl"))
    ap.add_argument("-n", "--n-instances", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--as-tokenized", action="store_true",
                    help="do not prepend BOS when the tokenizer leaves it out (measures the checkpoint as-is)")
    ap.add_argument("--completions", default=None, help="optional JSONL dump of every prompt's completion")
    args = ap.parse_args()

    exemplars = load_exemplars(args.exemplars, range(8))
    templates = load_template_set(args.templates)
    rows = []  # (template, question, gold, prompt)
    for t in templates:
        name = _template_name(t)
        for inst in draw_instances(t, args.n_instances, args.seed):
            rows.append((name, inst.question, float(inst.answer_value), build_prompt(inst.question, exemplars)))
    print(f"{len(templates)} templates, {len(rows)} prompts", flush=True)

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # vLLM's per-weight dtype warnings drown the table
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    # Gemma needs its BOS token. Tokenize here so that the prompt ids are explicit, and prepend BOS when
    # the checkpoint's tokenizer does not add it itself (unless --as-tokenized is given).
    tok = AutoTokenizer.from_pretrained(args.model)
    prompt_ids = [list(tok(r[3])["input_ids"]) for r in rows]
    bos = tok.bos_token_id
    missing = bos is not None and any(not ids or ids[0] != bos for ids in prompt_ids)
    if missing:
        print(f"WARNING: the tokenizer of {args.model} does not add BOS ({tok.bos_token!r}); "
              + ("measuring WITHOUT it (--as-tokenized)" if args.as_tokenized else "prepending it"), flush=True)
        if not args.as_tokenized:
            prompt_ids = [ids if ids and ids[0] == bos else [bos] + ids for ids in prompt_ids]

    llm = LLM(model=args.model, dtype="bfloat16", gpu_memory_utilization=0.25, enforce_eager=True, seed=0,
              enable_prefix_caching=True)
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, stop=["Q:"])
    t0 = time.time()
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params)
    print(f"generation: {time.time() - t0:.0f} s", flush=True)

    per: dict[str, list[int]] = {}
    dump = []
    for (name, q, gold, _), out in zip(rows, outs):
        text = out.outputs[0].text
        pred = extract_answer(text)
        ok = is_correct(pred, gold)
        per.setdefault(name, []).append(int(ok))
        dump.append({"template": name, "question": q, "gold": gold, "pred": pred, "correct": ok, "completion": text})

    table = [(name, len(v), sum(v), sum(v) / len(v)) for name, v in per.items()]
    mean = statistics.mean(a for *_, a in table)
    print(f"{'template':>10} {'n':>3} {'correct':>7} {'acc':>5}")
    for name, n, c, a in table:
        print(f"{name:>10} {n:>3} {c:>7} {a:5.2f}")
    print(f"{'mean':>10} {len(rows):>3} {sum(c for _, _, c, _ in table):>7} {mean:5.3f}")
    accs = [a for *_, a in table]
    print(f"templates with 0.1 <= acc <= 0.8: {sum(0.1 <= a <= 0.8 for a in accs)}/{len(accs)}; "
          f"acc < 0.1: {sum(a < 0.1 for a in accs)}; acc > 0.8: {sum(a > 0.8 for a in accs)}")

    out_csv = Path(args.csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["template", "n", "correct", "accuracy"])
        for name, n, c, a in table:
            w.writerow([name, n, c, f"{a:.4f}"])
        w.writerow(["mean", len(rows), sum(c for _, _, c, _ in table), f"{mean:.4f}"])
    if args.completions:
        p = Path(args.completions)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(d) + "\n" for d in dump))


if __name__ == "__main__":
    main()
