"""vLLM greedy throughput on gemma-3-270m with the gsm-mini prompt.

    python benchmarks/generation_speed.py --omp unset     # OMP_NUM_THREADS removed
    python benchmarks/generation_speed.py --omp 2         # as Snakemake sets it for a 2-thread rule
    python benchmarks/generation_speed.py --dtype float32 --compile     # torch.compile instead of eager

Besides the throughput it prints the machine's bound (benchmarks/roofline.py: the decode step's matmuls at the
float32 throughput this process measures, at the engine's batch) and the achieved fraction of it.

Needs results/gemma-3-270m/checkpoint and results/gemma-3-270m/instances/main.parquet
(snakemake --cores all results/gemma-3-270m/splits/seed0.parquet).
"""
import argparse
import os
import time

import pandas as pd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--omp", default="unset")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-num-seqs", type=int, default=None)
    ap.add_argument("--dtype", default="bfloat16", help="bfloat16 (default) or float32")
    ap.add_argument("--compile", action="store_true", help="let vLLM compile the model (default on CPU: eager)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    if args.omp == "unset":
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = args.omp
    from cca.config import ROOT, load_config, model_settings
    from cca.traces.generation import SamplingSpec, VLLMBackend
    from cca.tasks.config import TaskConfig
    from cca.traces.build import prompt_texts, tokenize_prompts

    s = model_settings(load_config(), "gemma-3-270m")
    inst = pd.read_parquet(ROOT / "results/gemma-3-270m/instances/main.parquet")
    inst = inst.iloc[:: max(1, len(inst) // args.prompts)].head(args.prompts)
    from transformers import AutoConfig
    from roofline import decode_bound, decode_flops_per_token

    checkpoint = ROOT / "results/gemma-3-270m/checkpoint"
    config = AutoConfig.from_pretrained(checkpoint)
    batch = min(args.prompts, args.max_num_seqs or 64)
    bound = decode_bound(config, batch)
    b = VLLMBackend(checkpoint, max_model_len=2048, max_num_seqs=args.max_num_seqs, dtype=args.dtype,
                    enforce_eager=False if args.compile else None)
    p = tokenize_prompts(b.tokenizer, prompt_texts(inst, TaskConfig.from_dict(s["task_config"]), ROOT))
    t = time.time()
    out = b.generate(p, SamplingSpec(max_new_tokens=args.max_new_tokens))
    dt = time.time() - t
    n = sum(len(o[0].token_ids) for o in out)
    print(f"OMP={args.omp} prompts={len(p)} prompt_tokens={sum(map(len, p))} generated={n} "
          f"{dt:.1f}s {n / dt:.1f} tok/s; bound at batch {batch}: {bound['tokens_per_s']:.1f} tok/s "
          f"({bound['flops_per_s'] / 1e9:.1f} GFLOP/s); achieved {n / dt / bound['tokens_per_s']:.1%} "
          f"({n * decode_flops_per_token(config) / dt / 1e9:.1f} GFLOP/s, linear layers only)"
          f" dtype={args.dtype} compile={args.compile} max_num_seqs={args.max_num_seqs}")
    b.close()


if __name__ == "__main__":
    main()
