"""Seconds per DCM epoch: per-example steps (``dcm.step: per_example``) against batched steps (``batched``),
in one process on the same examples and settings.

Models: ``tiny`` (the tiny Gemma-3 model on synthetic examples shaped like gemma-3-270m's: a shared prompt
longer than its sliding window, then suffixes of different lengths) and ``gemma-3-270m`` (its
Error-Localization examples, ``--model-dir``); ``auto`` runs the tiny model, and gemma-3-270m too when
its checkpoint exists. An epoch's time is the median over ``--repeats`` runs of 1 + E epochs of the E
epochs after the first (``DCMResult.epoch_seconds``: steps only, caching the example states left out);
early stop is off (``early_stop_fraction`` 1, and a run that stops anyway is refused). Also reported: the
largest difference between the two paths' final masks.

    python benchmarks/dcm_speed.py --model tiny --out benchmarks/results/dcm_speed_tiny.json
    python benchmarks/dcm_speed.py --model gemma-3-270m --out benchmarks/results/dcm_speed_gemma-3-270m.json
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _tiny(args):
    """(model, examples): the tiny Gemma-3 model; a shared prompt of ``--shared`` tokens, then own suffixes."""
    import torch

    from cca.models.tiny import build_tiny_model
    from cca.update.targeted import Examples

    model, _ = build_tiny_model("gemma3", seed=0)
    g = torch.Generator().manual_seed(0)
    ids = lambda k: torch.randint(5, model.config.vocab_size, (k,), generator=g).tolist()
    common = ids(args.shared)
    lengths = torch.randint(2, 2 * args.suffix, (args.examples,), generator=g).tolist()
    prefixes = [common + ids(k) for k in lengths]
    desired = ids(args.examples)
    return model, Examples(prefixes, desired, [(d + 1) % model.config.vocab_size for d in desired])


def _gemma(args):
    from cca.io import read_parquet
    from cca.models.registry import load_model
    from cca.update.targeted import Examples

    d = Path(args.model_dir)
    model, _ = load_model(d / "checkpoint", dtype="float32")
    df = read_parquet(d / f"seed{args.seed}" / f"error_localization_{args.method}.parquet")
    ex = Examples.from_frame(df)
    n = min(args.examples, len(ex))
    return model, Examples(ex.prefixes[:n], ex.desired[:n], ex.undesired[:n])


def _settings(args):
    from cca.circuits.config import DCMConfig
    from cca.config import profile_section

    return DCMConfig.from_dict(profile_section("dcm", {"lambdas": [args.lam], "lr": args.lr, "epochs": 1,
                                                       "batch_size": args.batch, "early_stop_fraction": 1.0}))


def _run(model, ex, cfg, lam, epochs):
    """A train_mask run of ``epochs`` epochs (each epoch's wall time in ``epoch_seconds``)."""
    from cca.circuits.dcm import train_mask
    from cca.models.components import component_map

    res = train_mask(model, component_map(model), ex.prefixes, ex.desired, ex.undesired, cfg.replace(epochs=epochs),
                     lam, seed=0)
    if res.epochs_run != epochs:
        raise SystemExit(f"the run stopped after {res.epochs_run} of {epochs} epochs: lower --lam")
    return res


def bench(name: str, model, ex, args) -> dict:
    import statistics

    import torch

    cfg = _settings(args)
    out = {"model": name, "examples": len(ex), "batch_size": args.batch, "epochs_timed": args.epochs,
           "repeats": args.repeats, "mean_prefix_tokens": sum(map(len, ex.prefixes)) / len(ex),
           "longest_prefix_tokens": max(map(len, ex.prefixes)), "shortest_prefix_tokens": min(map(len, ex.prefixes))}
    seconds, final = {"per_example": [], "batched": []}, {}
    for _ in range(args.repeats):          # alternating, so that a change in machine load hits both
        for step in seconds:
            res = _run(model, ex, cfg.replace(step=step), args.lam, 1 + args.epochs)
            seconds[step] += res.epoch_seconds[1:]
            final[step] = torch.cat([res.values[k] for k in sorted(res.values)])
    for step, times in seconds.items():
        out[f"{step}_s_per_epoch"] = statistics.median(times)
    out["per_example_over_batched"] = out["per_example_s_per_epoch"] / out["batched_s_per_epoch"]
    out["max_mask_difference"] = float((final["per_example"] - final["batched"]).abs().max())
    return out


def _cpu() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", text)
    avx = sorted(set(re.findall(r"\b(avx512[a-z_]*)", text)))
    return f"{model.group(1) if model else platform.processor()}; {avx[0] if avx else 'no avx512'}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["auto", "tiny", "gemma-3-270m"], default="auto")
    ap.add_argument("--model-dir", default=str(ROOT / "results" / "gemma-3-270m"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="prefix")
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--shared", type=int, default=690, help="tiny model: shared prompt tokens")
    ap.add_argument("--suffix", type=int, default=45, help="tiny model: mean suffix tokens")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-2)
    ap.add_argument("--lam", type=float, default=1e-2)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed (after one untimed)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = {"auto": ["tiny"] + (["gemma-3-270m"] if (Path(args.model_dir) / "checkpoint").exists() else []),
             "tiny": ["tiny"], "gemma-3-270m": ["gemma-3-270m"]}[args.model]
    results = {"cpu": _cpu(), "threads": args.threads, "runs": []}
    for name in names:
        model, ex = _tiny(args) if name == "tiny" else _gemma(args)
        results["runs"].append(bench(name, model, ex, args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
