"""Cost of DCM and of the targeted update on the same Error-Localization examples, in one run.

DCM (one batch of ``--batch`` examples, time per batch, median of ``--repeats``):
  naive      gates on the full sequence, forward + backward of every token, full LM head (what a
             direct implementation of the reference does);
  hooks      this project: each example's KV up to its last token cached once, one token's forward
             and backward per example per step, only the desired and undesired rows of the LM head,
             gates as PyTorch hooks;
  nnsight    the same with gates through an nnsight trace;
  plain      the same cached one-token forward + backward with no gates at all (gradient to the
             input embeddings): the floor the hook backend is measured against (target: hooks <= 1.15x).
Targeted update (one full-batch step over ``--examples`` examples, 1% mask):
  naive      one full forward + backward per example;
  shared     this project: the prompt shared by all examples run once (exact);
  memory     peak RSS above the loaded model for the update step, against a no-grad forward over the
             same batch plus the activations autograd saves for backward (target: <= 1.3x).

    python benchmarks/dcm_update_cost.py --model-dir results/gemma-3-270m --seed 0 --method prefix \
        --out benchmarks/results/dcm_update_cost.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load(args):
    import torch

    from cca.models.components import component_map
    from cca.io import read_parquet
    from cca.models.registry import load_model
    from cca.update.targeted import Examples

    torch.set_num_threads(args.threads)
    model, _ = load_model(Path(args.model_dir) / "checkpoint", dtype="float32")
    df = read_parquet(Path(args.model_dir) / f"seed{args.seed}" / f"error_localization_{args.method}.parquet")
    ex = Examples.from_frame(df)
    return model, component_map(model), ex


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_dcm(args) -> dict:
    import torch

    from cca.circuits.dcm import ExampleStates
    from cca.circuits.gating import NNsightGates, hook_gates
    from cca.models.shared_prefix import decoder, logit_difference, pair_logit_difference

    model, cmap, ex = _load(args)
    for p in model.parameters():
        p.requires_grad_(False)
    idx = list(range(args.batch))
    names, sizes = [s.name for s in cmap.sites], [s.count for s in cmap.sites]
    mask = torch.nn.Parameter(torch.ones(cmap.total))
    t = time.perf_counter()
    states = ExampleStates(model, [ex.prefixes[i] for i in idx], 8 * 2**30)
    states.precompute()
    cache_seconds = time.perf_counter() - t

    def scales():
        return dict(zip(names, torch.split(2 * mask, sizes)))

    body = decoder(model)

    def loss_of(diff_fn):
        return -torch.cat([diff_fn(i) for i in idx]).mean()

    def pair(i, hidden):
        return pair_logit_difference(model, hidden[:, -1], torch.tensor([ex.desired[i]]), torch.tensor([ex.undesired[i]]))

    def one(i, **kw):
        return pair(i, body(input_ids=torch.tensor([[ex.prefixes[i][-1]]]), past_key_values=states.get(i),
                            use_cache=True, **kw).last_hidden_state)

    def hooks_step():
        mask.grad = None
        with hook_gates(model, cmap, scales()):
            loss_of(one).backward()

    emb = model.get_input_embeddings()

    def plain_step():
        def fwd(i):
            e = emb(torch.tensor([[ex.prefixes[i][-1]]])).detach().requires_grad_(True)
            return pair(i, body(inputs_embeds=e, past_key_values=states.get(i), use_cache=True).last_hidden_state)
        loss_of(fwd).backward()

    def naive_step():   # the reference's way: the whole prefix, full logits, every step
        mask.grad = None
        with hook_gates(model, cmap, scales()):
            loss_of(lambda i: logit_difference(model(input_ids=torch.tensor([ex.prefixes[i]]), logits_to_keep=1)
                                               .logits[:, -1].float(), torch.tensor([ex.desired[i]]),
                                               torch.tensor([ex.undesired[i]]))).backward()

    out = {"examples_per_batch": len(idx), "mean_prefix_tokens": statistics.mean(len(ex.prefixes[i]) for i in idx),
           "shared_prompt_tokens": states.shared_len, "state_cache_seconds": round(cache_seconds, 2)}
    hooks_step()
    plain_step()
    out["hooks_s_per_batch"] = _timed(hooks_step, args.repeats)
    out["plain_s_per_batch"] = _timed(plain_step, args.repeats)
    out["naive_s_per_batch"] = _timed(naive_step, 1)
    nn = NNsightGates(model, cmap)

    def nnsight_step():
        mask.grad = None
        loss_of(lambda i: pair(i, nn.hidden(scales(), input_ids=torch.tensor([[ex.prefixes[i][-1]]]),
                                            past_key_values=states.get(i), use_cache=True))).backward()

    nnsight_step()
    out["nnsight_s_per_batch"] = _timed(nnsight_step, args.repeats)
    out["hooks_over_plain"] = out["hooks_s_per_batch"] / out["plain_s_per_batch"]
    out["nnsight_over_hooks"] = out["nnsight_s_per_batch"] / out["hooks_s_per_batch"]
    out["naive_over_hooks"] = out["naive_s_per_batch"] / out["hooks_s_per_batch"]
    return out


def _rss_peak_reset():
    Path("/proc/self/clear_refs").write_text("5")


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_update(args) -> dict:
    """Timing of one full-batch step; memory is measured in separate processes (``--memory``)."""
    import torch

    from cca.models.components import update_slices
    from cca.update.row_delta import attach
    from cca.models.shared_prefix import logit_difference, logit_difference_backward

    model, cmap, ex = _load(args)
    n = min(args.examples, len(ex))
    pre, des, und = ex.prefixes[:n], ex.desired[:n], ex.undesired[:n]
    wrapped = attach(model, update_slices(cmap, _one_percent(cmap), ("q", "k", "v", "up")))

    def shared_step():
        for rd in wrapped.values():
            rd.delta.grad = None
        logit_difference_backward(model, pre, des, und, micro_batch=args.micro_batch)

    def naive_step():
        for rd in wrapped.values():
            rd.delta.grad = None
        for p, d, u in zip(pre, des, und):
            lg = model(input_ids=torch.tensor([p]), logits_to_keep=1).logits[:, -1]
            (-logit_difference(lg, torch.tensor([d]), torch.tensor([u])).sum() / n).backward()

    shared_step()
    out = {"examples": n, "shared_s_per_step": _timed(shared_step, max(1, args.repeats // 2)),
           "naive_s_per_step": _timed(naive_step, 1)}
    out["naive_over_shared"] = out["naive_s_per_step"] / out["shared_s_per_step"]
    return out


def _one_percent(cmap):
    """A fixed 1% selection: every 100th component of each site (at least one per site type)."""
    sel = {}
    for s in cmap.sites:
        step = 100
        sel[s.name] = list(range(0, s.count, step)) if s.count >= step else ([0] if s.layer % 4 == 0 else [])
    return sel


def memory_probe(args) -> dict:
    """One measurement per process: ``--probe forward`` (no-grad forward + saved activations) or
    ``--probe update`` (one masked update step)."""
    import torch

    from cca.models.components import update_slices
    from cca.update.row_delta import attach
    from cca.models.shared_prefix import logit_difference_backward

    model, cmap, ex = _load(args)
    n = min(args.examples, len(ex))
    pre, des, und = ex.prefixes[:n], ex.desired[:n], ex.undesired[:n]
    import gc

    gc.collect()
    base = _status_mib("VmRSS")
    _rss_peak_reset()
    if args.probe == "forward":
        from cca.models.shared_prefix import common_prefix_length, last_position_logits, prefix_cache

        k = common_prefix_length(pre)
        with torch.no_grad():
            shared = prefix_cache(model, pre[0][:k])
            for s in range(0, n, args.micro_batch):
                last_position_logits(model, shared, [p[k:] for p in pre[s:s + args.micro_batch]])
        peak = _status_mib("VmHWM") - base
        # activations autograd saves for backward, for the same computation, counted exactly
        saved = {}

        def pack(t):
            saved[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
            return t

        for p in model.parameters():
            p.requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            shared = prefix_cache(model, pre[0][:k])
            for s in range(0, n, args.micro_batch):
                last_position_logits(model, shared, [p[k:] for p in pre[s:s + args.micro_batch]]).sum()
        return {"forward_peak_mib": peak, "saved_activations_mib": sum(saved.values()) / 2**20}
    wrapped = attach(model, update_slices(cmap, _one_percent(cmap), ("q", "k", "v", "up")))
    logit_difference_backward(model, pre, des, und, micro_batch=args.micro_batch)
    trainable = sum(rd.delta.numel() for rd in wrapped.values())
    return {"update_peak_mib": _status_mib("VmHWM") - base, "trainable_values": trainable,
            "trainable_percent_of_weights": 100 * trainable / sum(p.numel() for p in model.parameters())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="prefix")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe", choices=["forward", "update"], help=argparse.SUPPRESS)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(memory_probe(args)))
        return
    result = {"dcm": bench_dcm(args), "update": bench_update(args)}
    for probe in ("forward", "update"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--probe", probe]
        result["update"].update(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True)
                                           .stdout.strip().splitlines()[-1]))
    u = result["update"]
    u["memory_ratio"] = u["update_peak_mib"] / (u["forward_peak_mib"] + u["saved_activations_mib"])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
