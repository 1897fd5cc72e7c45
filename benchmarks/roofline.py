"""The machine's float32 matmul throughput at a model's shapes, and a stage's achieved fraction of it.

    python benchmarks/roofline.py                       # gemma-3-270m's decode shapes at batch 64

``matmul_flops(shapes)`` times torch matmuls of the given (m, k, n) shapes on this machine, with the threads this
process has, and returns the best FLOP/s of each; ``decode_flops_per_token(config)`` counts a decoder's linear
FLOPs per generated token (2 x the weights of its projections and its LM head; attention over the context is
left out, so an achieved fraction computed from it is a lower bound).
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def matmul_flops(shapes: list[tuple[int, int, int]], seconds: float = 1.0) -> dict[tuple[int, int, int], float]:
    """Best FLOP/s of ``(m, k) @ (k, n)`` in float32 for each shape, each timed for about ``seconds``."""
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b                                   # warm-up
        best, spent = float("inf"), 0.0
        while spent < seconds:
            t = time.perf_counter()
            a @ b
            dt = time.perf_counter() - t
            best, spent = min(best, dt), spent + dt
        out[(m, k, n)] = 2 * m * k * n / best
    return out


def decode_shapes(config, batch: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) of one decode step's projections and LM head at ``batch`` sequences."""
    h = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    f = config.intermediate_size
    return [(batch, h, q), (batch, h, kv), (batch, q, h), (batch, h, f), (batch, f, h), (batch, h, config.vocab_size)]


def decode_flops_per_token(config) -> float:
    """Linear FLOPs of one generated token: every layer's q/k/v/o and gate/up/down, and the LM head."""
    h = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    f = config.intermediate_size
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * f
    return 2.0 * (config.num_hidden_layers * per_layer + h * config.vocab_size)


def decode_bound(config, batch: int, seconds: float = 1.0) -> dict:
    """This machine's bound on decoding: the time of one decode step's matmuls at their measured throughput,
    as FLOP/s over the step and tokens per second."""
    shapes = decode_shapes(config, batch)
    rates = matmul_flops(shapes, seconds)
    layers = config.num_hidden_layers
    counts = [layers, 2 * layers, layers, 2 * layers, layers, 1]     # q; k and v; o; gate and up; down; head
    step = sum(c * 2 * m * k * n / rates[(m, k, n)] for c, (m, k, n) in zip(counts, shapes))
    flops = decode_flops_per_token(config) * batch
    return {"batch": batch, "step_seconds": step, "flops_per_s": flops / step, "tokens_per_s": batch / step,
            "by_shape_gflops": {f"{m}x{k}x{n}": round(r / 1e9, 1) for (m, k, n), r in rates.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="results/gemma-3-270m/checkpoint")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.checkpoint)
    config = getattr(config, "text_config", config)
    bound = decode_bound(config, args.batch)
    print(json.dumps({"threads": torch.get_num_threads(), "gflop_per_token": decode_flops_per_token(config) / 1e9,
                      **bound}, indent=1))


if __name__ == "__main__":
    main()
