"""Tiny randomly initialised models of every supported architecture, built locally for tests.

Each has 2 layers, 4 query heads over 2 KV heads (grouped-query attention) and a
byte-level BPE tokenizer trained here on the vendored GSM8K text, so the whole
pipeline (prompts, generation, localization, masks, updates) runs in seconds.
The architectures with a head_dim of their own (Gemma) get one (``HEAD_DIM``) that differs from
hidden_size / num_heads, as the real ones do, so code that derives head_dim from the hidden
size fails on them; those with sliding-window layers get a window (``SLIDING_WINDOW``) shorter than the
shared prompts of the tests. Which architectures have a tiny model: cca.models.architectures.
"""
from __future__ import annotations

import json
from pathlib import Path

from cca.config import ROOT
from cca.models.architectures import TINY

ARCHITECTURES = tuple(TINY)
# "<|endoftext|>" is in the vocabulary because the Qwen2 tokenizer class (which AutoTokenizer picks for a
# qwen2 model) adds it when it is missing, which would give a token id beyond the embedding.
VOCAB_SIZE = 512
HEAD_DIM = 64          # where the architecture sets head_dim on its own (Architecture.own_head_dim)
SLIDING_WINDOW = 256   # where it has sliding-window layers (Architecture.sliding_window)
_RESOURCES = ROOT / "resources"


def _common(vocab_size: int, tokenizer) -> dict:
    # head_dim 32 (HEAD_DIM where set on its own): vLLM's CPU attention kernels support no head_dim below 32.
    return dict(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)


def tiny_config(architecture: str, tokenizer):
    import transformers as tf

    if architecture not in TINY:
        raise ValueError(f"unknown tiny architecture '{architecture}': choose one of {', '.join(ARCHITECTURES)}")
    arch = TINY[architecture]
    kw = _common(len(tokenizer), tokenizer)
    if arch.own_head_dim:
        kw["head_dim"] = HEAD_DIM
    if arch.sliding_window:
        kw["sliding_window"] = SLIDING_WINDOW
    return getattr(tf, arch.config_class)(**kw)


def build_tokenizer(vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer trained on GSM8K questions and solutions (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rows = [json.loads(line) for line in (_RESOURCES / "gsm8k" / "train.jsonl").read_text().splitlines()[:2000]]
    corpus = [r["question"] + "\n" + r["answer"] for r in rows]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def build_tiny_model(architecture: str, seed: int = 0, train_steps: int = 0):
    """(model, tokenizer): a randomly initialised fp32 model of ``architecture``.

    With ``train_steps``, the model is then trained briefly on worked gsm-mini problems, so that it
    writes answers in the prompt's format and is sometimes right: enough for every stage of the
    workflow to have real pairs, pivots and masks to work on in tests.
    """
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    config = tiny_config(architecture, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if train_steps:
        train_on_gsm_mini(model, tokenizer, train_steps, seed)
    return model.eval(), tokenizer


def train_on_gsm_mini(model, tokenizer, steps: int, seed: int = 0, batch_size: int = 16, lr: float = 3e-3) -> None:
    """A few hundred AdamW steps of next-token prediction on two-problem gsm-mini sequences."""
    import random

    import torch

    from cca.tasks.prompting import ANSWER_CUE, gsm8k_solution_to_cot
    from cca.templates import draw_instances, load_template_set

    rng = random.Random(seed)
    torch.manual_seed(seed)
    templates = load_template_set(_RESOURCES / "gsm-mini" / "templates", "gsm-mini")
    # seed 10_000 + seed: instances disjoint in draw from the workflow's (instances.seed is small)
    texts = [f"Q: {i.question}\nA: {ANSWER_CUE} {gsm8k_solution_to_cot(i.solution)}\n\n"
             for t in templates for i in draw_instances(t, 30, 10_000 + seed)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        seqs = ["".join(rng.sample(texts, 2)) for _ in range(batch_size)]
        enc = tokenizer(seqs, return_tensors="pt", padding=True, truncation=True, max_length=256)
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
