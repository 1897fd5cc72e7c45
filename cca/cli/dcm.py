"""``cca dcm`` (workflow/rules/dcm.smk): a DCM mask for one lambda, with its counts, history (per step: loss,
logit difference, selected count, lr, running sum of lr * lambda) and figures."""
from __future__ import annotations

from dataclasses import dataclass

from cca.circuits.config import DCMConfig
from cca.cli.common import add_paths, torch_threads
from cca.errors import CCAError
from cca.settings import Settings, placement


@dataclass(frozen=True)
class MaskSettings(Settings):
    dcm: DCMConfig                  # lambdas None: one job trains one lambda, so adding one re-runs only its mask
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "MaskSettings":
        return cls.from_dict({"dcm": {**s["dcm"], "lambdas": None}, "device_map": placement(s, True)})


def dcm(args) -> None:
    import time
    from pathlib import Path

    import pandas as pd
    import torch

    from cca.circuits.dcm import count_table, train_mask
    from cca.circuits.figures import heads_heatmap, neurons_bars, selected_curve
    from cca.circuits.mask_file import save_mask
    from cca.io import read_parquet, write_parquet
    from cca.models.components import component_map
    from cca.models.registry import load_model
    from cca.update.targeted import Examples

    torch_threads()
    st = MaskSettings.from_json(args.settings)
    cfg = st.dcm
    ex = Examples.from_frame(read_parquet(args.dataset), source=str(args.dataset))
    model, _ = load_model(args.checkpoint, dtype="float32", device_map=st.device_map)
    cmap = component_map(model)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    res = train_mask(model, cmap, ex.prefixes, ex.desired, ex.undesired, cfg, args.lam, args.seed, progress=True)
    seconds = time.perf_counter() - t0
    if res.n_selected == 0:
        raise CCAError(f"lambda {args.lam:g} selected no component (the sparsity penalty drove every mask below 0.5 "
                       f"in {res.epochs_run} epochs): lower dcm.lambdas in config.yaml")
    out = Path(args.out)
    stem = out.name.removesuffix(".safetensors")
    counts = count_table(cmap, res.selected)
    meta = {"lambda": args.lam, "selected": res.n_selected, "total": res.n_total,
            "percent": 100.0 * res.n_selected / res.n_total, "epochs_run": res.epochs_run,
            "stopped_early": res.stopped_early, "unselected": cfg.unselected, "examples": len(ex),
            "model_type": cmap.model_type, "seed": args.seed, "backend": cfg.backend, "step": cfg.step,
            "sum_lr_lambda": res.sum_lr_lambda, "seconds": round(seconds, 1),
            "seconds_per_epoch": round(sum(res.epoch_seconds) / len(res.epoch_seconds), 2),
            "selected_by_kind": counts.groupby("kind")["selected"].sum().to_dict()}
    write_parquet(counts, out.with_name(f"{stem}.counts.parquet"))
    history = pd.DataFrame(res.history)
    write_parquet(history, out.with_name(f"{stem}.history.parquet"))
    title = f"lambda {args.lam:g}: {res.n_selected}/{res.n_total} components ({meta['percent']:.2f}%)"
    heads_heatmap(res.selected, cmap, out.with_name(f"{stem}.heads.png"), title)
    neurons_bars(counts, out.with_name(f"{stem}.neurons.png"), f"lambda {args.lam:g}")
    selected_curve(history, res.n_total, out.with_name(f"{stem}.selected.png"),
                   f"lambda {args.lam:g}: sum of lr*lambda {res.sum_lr_lambda:.3g}")
    save_mask(out, res.values, res.selected, meta)   # last: the rule's main output marks completion
    print(f"lambda {args.lam:g}: {res.n_selected}/{res.n_total} components selected ({meta['percent']:.3f}%) "
          f"by kind {meta['selected_by_kind']}, {res.epochs_run} epochs"
          f"{' (early stop)' if res.stopped_early else ''}, {seconds:.0f}s -> {out}")


def register(sub) -> None:
    s = sub.add_parser("dcm", help="learn a DCM mask for one lambda on an Error-Localization dataset")
    add_paths(s, "--checkpoint")
    s.add_argument("--dataset", required=True, help="error_localization_<method>.parquet")
    s.add_argument("--lam", type=float, required=True, help="sparsity penalty lambda")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--settings", required=True, help="JSON of cca.cli.dcm.MaskSettings")
    s.add_argument("--out", required=True, help="mask file (.safetensors); counts, history and figures go next to it")
    s.set_defaults(run=dcm)
