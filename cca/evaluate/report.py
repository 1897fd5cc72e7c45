"""results/<model>/report.md: the table rendered, the figures, and the paper's numbers beside ours."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd

from cca.layout import VARIANTS, label, run_dir
from cca.models.parameter_groups import GROUPS

# Table 1 of the paper (GSM-Symbolic test, mean per template): original -> CCA (Branching, w/ mask).
PAPER_TABLE1 = {
    "gemma-2-2b": {"original": 0.411, "cca": 0.525, "percent_components": 1.59},
    "gemma-2-9b": {"original": 0.807, "cca": 0.881, "percent_components": 0.17},
    "olmo-2-7b": {"original": 0.739, "cca": 0.794, "percent_components": None},
    "olmo-2-13b": {"original": 0.742, "cca": 0.786, "percent_components": None},
}


def _fmt(x, digits=3):
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _math_rows(table: pd.DataFrame, sets: list[str]) -> list[str]:
    head = ["configuration", "seeds", "kept an update", "dataset size", "% components"]
    for s in sets:
        head += [f"{s} (mean +- std)", f"{s} delta (points) [95% interval]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        d = r._asdict()
        cells = [label(r.configuration), str(r.seeds),
                 "-" if r.configuration == "original" else f"{r.updated_seeds} of {r.seeds}",
                 f"{r.dataset_size:.0f}", f"{r.percent_components:.2f}"]
        for s in sets:
            delta = f"{d[f'{s}_delta']:+.1f}"
            if r.configuration != "original" and pd.notna(d.get(f"{s}_delta_lo")):
                delta += f" [{d[f'{s}_delta_lo']:+.1f}, {d[f'{s}_delta_hi']:+.1f}]"
            cells += [f"{_fmt(d[f'{s}_mean'])} +- {_fmt(d[f'{s}_std'])}", delta]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _general_rows(table: pd.DataFrame, benches: list[str]) -> list[str]:
    head = ["configuration"] + benches
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [label(r["configuration"])]
        if all(pd.isna(r[b]) for b in benches):
            lines.append("| " + " | ".join(cells + ["not evaluated (general.configurations)"] * len(benches)) + " |")
            continue
        for b in benches:
            if r["configuration"] == "original":
                cells.append(f"{r[b]:.1f}")
            else:
                flag = " **" + ("gain" if r[f"{b}_delta_lo"] > 0 else "regression") + "**" \
                    if (r[f"{b}_delta_lo"] > 0 or r[f"{b}_delta_hi"] < 0) else ""
                half = (r[f"{b}_delta_hi"] - r[f"{b}_delta_lo"]) / 2
                cells.append(f"{r[b]:.1f} ({r[f'{b}_delta']:+.1f} [{r[f'{b}_delta_lo']:+.1f}, "
                             f"{r[f'{b}_delta_hi']:+.1f}], +-{half:.1f}){flag}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mask_overlaps(root: Path, seeds: list[int], methods: list[str]) -> list[dict]:
    """Per lambda: the Jaccard overlap of the DCM masks between methods on each seed, and across seeds for
    each method (the mean over pairs of seeds), from ``seed<S>/<method>/masks/lambda<L>.safetensors``."""
    from cca.circuits.mask_file import load_mask
    from cca.circuits.overlap import jaccard, mean_pairwise_jaccard

    files = {(s, m): {p.name.removesuffix(".safetensors"): p
                      for p in (root / f"seed{s}" / m / "masks").glob("lambda*.safetensors")}
             for s in seeds for m in methods}
    lams = sorted({lam for f in files.values() for lam in f}, key=lambda n: float(n.removeprefix("lambda")))
    rows = []
    for lam in lams:
        masks = {k: load_mask(f[lam])[0] for k, f in files.items() if lam in f}
        for s in seeds:
            for a, b in combinations(methods, 2):
                if (s, a) in masks and (s, b) in masks:
                    rows.append({"lambda": lam.removeprefix("lambda"), "between": f"{a} / {b}, seed {s}",
                                 "jaccard": jaccard(masks[(s, a)], masks[(s, b)])})
        for m in methods:
            across = mean_pairwise_jaccard([masks[(s, m)] for s in seeds if (s, m) in masks])
            if across is not None:
                rows.append({"lambda": lam.removeprefix("lambda"), "between": f"{m}, seeds {seeds}",
                             "jaccard": across})
    return rows


def _gradient_rows(shares: list[dict]) -> list[str]:
    head = ["method", "seed"] + [f"{g} %" for g in GROUPS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in shares:
        lines.append("| " + " | ".join([r["method"], str(r["seed"])] + [f"{100 * r[g]:.1f}" for g in GROUPS]) + " |")
    return lines


def _sweep_rows(sweep: pd.DataFrame) -> list[str]:
    head = ["method", "seed", "lambda", "sum lr*lambda", "epochs (early stop)", "% components",
            "heads (Q, K, V)", "neurons", "best val gain (points)", "at lr, step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sweep.to_dict("records"):
        stop = " (yes)" if r["stopped_early"] else " (no)"
        gain = "" if pd.isna(r["val_gain"]) else f"{r['val_gain']:+.1f}"
        at = "" if pd.isna(r["val_gain"]) else f"{r['best_lr']:g}, {int(r['best_step'])}"
        lr_lam = "" if r["sum_lr_lambda"] is None or pd.isna(r["sum_lr_lambda"]) else f"{r['sum_lr_lambda']:.3g}"
        lines.append("| " + " | ".join([
            r["method"], str(r["seed"]), f"{r['lambda']:g}", lr_lam, f"{r['epochs_run']}{stop}",
            f"{r['percent_components']:.2f}",
            f"{r['heads_selected']}/{r['heads_total']} ({r['percent_heads']:.1f}%)",
            f"{r['neurons_selected']}/{r['neurons_total']} ({r['percent_neurons']:.2f}%)", gain, at]) + " |")
    return lines


def render_report(model: str, table: pd.DataFrame, settings: dict, root: Path, general_seeds: list[int],
                  gradient_shares: list[dict] | None = None, study: dict | None = None) -> str:
    """The report; ``gradient_shares``: per (method, seed) the w/o mask update's squared-gradient share of each
    parameter group at the base weights (``{"method", "seed", <group>: share}``), a section of its own;
    ``study``: ``{"findings": sentences, "sweep": cca.evaluate.study.lambda_sweep_table, "figure": its png
    under root}``."""
    sets = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    study = study or {}
    shared = settings.get("seed_data") == "shared"
    seeds_text = (f"seeds {settings['seeds']}, sharing seed {settings['seeds'][0]}'s split and stage-1 artifacts "
                  "(traces, Error-Localization datasets), so the seeds vary DCM's batch order, the random "
                  "control's draw, the update's pair subset and LoRA's initialisation and order"
                  if shared and len(settings["seeds"]) > 1 else f"seeds {settings['seeds']}")
    out = [f"# CCA results: {model}", ""]
    if study.get("findings"):
        out += ["## What this run found", ""] + [f"- {s}" for s in study["findings"]] + [""]
    out += [f"Profile `{settings['profile']}`, task `{settings['task']}`, {seeds_text}. "
           "Accuracy is greedy exact match, mean of per-template accuracies; deltas are in points against the "
           "original model on the same seeds' test splits, with a paired bootstrap 95% interval (questions "
           "resampled, the same draw for both models; the statistic is the mean of per-template accuracies). "
           "\"kept an update\" counts the seeds whose validation "
           "preferred an updated model to the base one (otherwise the configuration *is* the original model). "
           "The controls, where they ran: *random mask* trains as many components per layer and kind as the w/ mask "
           "update's chosen DCM mask, drawn at random (same lr sweep and selection), so its % components is that "
           "mask's; *w/o mask, body only* trains every parameter but the embedding / LM head and the norms, and "
           "its % components is the share of parameter values it trains.", "",
           "## GSM accuracy (the paper's Table 1)", ""]
    out += _math_rows(table, sets)
    if gradient_shares:
        out += ["", "## Where the w/o mask gradient lies", "",
                "Share of the squared gradient norm of the update's loss over the training pairs, at the base "
                "weights, per parameter group (embedding: the input embedding and the LM head).", ""]
        out += _gradient_rows(gradient_shares)
    sweep = study.get("sweep")
    if sweep is not None and len(sweep):
        out += ["", "## The lambda sweep (the paper's Table 7, per lambda)", "",
                "Each DCM mask: the running sum of lr * lambda over its steps (how far the penalty alone moves a "
                "mask), the epochs it ran and whether the flat-count early stop ended it, its size, and the best "
                "validation gain over the base model of the w/ mask update with it (over the lr sweep and the "
                "validation steps).", ""]
        out += _sweep_rows(sweep)
        if study.get("figure"):
            out += ["", f"![% components against validation gain]({study['figure']})"]
    benches = [c for c in table.columns if f"{c}_delta_lo" in table.columns]
    if benches:
        out += ["", "## General abilities (the paper's Table 2)", "",
                f"Scores x100 on the configured subsample (seeds {general_seeds}); in brackets the difference to "
                "the original in points with its paired bootstrap 95% interval and the interval's half-width (+-: "
                "about the smallest change this subsample can detect). A difference is called a gain or a "
                "regression only when the interval excludes zero. Each column is lm-eval's task of that name "
                "and its metric: `acc` (MMLU, ARC, TruthfulQA MC1; MC2: the normalised mass of the true answers), "
                "`acc_norm` for `arc_challenge_acc_norm` (the usual published ARC number), `exact_match` for "
                "TriviaQA (lm-eval's procedure on a vendored subset: it compares models here, not with published "
                "numbers; see docs/method.md).", ""]
        out += _general_rows(table, benches)
    overlaps = mask_overlaps(root, settings["seeds"], settings["localization"]["methods"])
    if overlaps:
        out += ["", "## Mask stability", "",
                "Jaccard overlap of the selected components (|A and B| / |A or B|) of the DCM masks of one lambda: "
                "between the localization methods on one seed, and across seeds for one method (mean over pairs).",
                "", "| lambda | between | Jaccard |", "|---|---|---|"]
        out += [f"| {r['lambda']} | {r['between']} | {r['jaccard']:.3f} |" for r in overlaps]
    devs = settings.get("deviations") or []
    if devs:
        out += ["", "## Where this run differs from the reference code", "",
                "| setting | this run | reference code | this project's default |", "|---|---|---|---|"]
        out += [f"| `{d['setting']}` | {d['value']}{' (as the reference)' if d['as_reference'] else ''} | "
                f"{d['reference']} | {d['what']} |" for d in devs]
    paper = PAPER_TABLE1.get(model)
    out += ["", "## The paper's numbers for this model", ""]
    if paper:
        pct = f", {paper['percent_components']}% of components" if paper["percent_components"] else ""
        out.append(f"Table 1 (CCA, branching, w/ mask): {paper['original']:.3f} -> {paper['cca']:.3f}{pct}. "
                   f"Here: {_fmt(_value(table, 'original', 'test_mean'))} -> "
                   f"{_fmt(_value(table, 'cca-branching-mask', 'test_mean'))}.")
    else:
        out.append("The paper did not run this model.")
    figures = []
    for seed in settings["seeds"]:
        for method in settings["localization"]["methods"]:
            for png in sorted((root / f"seed{seed}" / method / "masks").glob("*.png")):
                figures.append(f"![{png.stem}]({png.relative_to(root).as_posix()})")
            for variant in VARIANTS:
                p = root / run_dir(f"cca-{method}-{variant}", seed) / "curve.png"
                if p.exists():
                    figures.append(f"![validation {method} {variant} seed {seed}]({p.relative_to(root).as_posix()})")
        p = root / run_dir("lora", seed) / "curve.png"
        if p.exists():
            figures.append(f"![validation LoRA seed {seed}]({p.relative_to(root).as_posix()})")
    if figures:
        out += ["", "## Masks and validation curves", ""] + figures
    return "\n".join(out) + "\n"


def _value(table: pd.DataFrame, conf: str, col: str):
    row = table[table["configuration"] == conf]
    return float(row[col].iloc[0]) if len(row) and col in row else float("nan")
