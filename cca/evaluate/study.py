"""What the report concludes: the lambda sweep (the paper's Table 7 per lambda, with each mask's validation
gain), the DCM mask against the random mask of the same size, and the deviations from the reference code.

Pure functions over small tables, and ``read_lambda_sweep`` that gathers them from a run's folder.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# A run's settings that differ from the reference code by default: (setting, the reference's value, what ours
# does). The report lists each with the value the run used.
DEVIATIONS = (
    ("dcm.early_stop_from", "start",
     "half_selected: the flat-count early stop is counted once at most half of the components remain selected "
     "(counted from the start it stops before any mask has moved)"),
    ("update.base_candidate", False,
     "true: the base model competes in the selection on validation, so an update that validates no better is "
     "not kept"),
    ("lora.base_candidate", False, "true: as update.base_candidate, for LoRA"),
    ("template_filter.instances", "all",
     "train: the template filter reads the train split's greedy accuracy, never the test answers"),
)


def _get(settings: dict, dotted: str):
    node = settings
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def deviations(settings: dict) -> list[dict]:
    """Each default deviation from the reference code with the value this run used (``settings``: the
    model's settings) and whether the run followed the reference there."""
    rows = []
    for key, reference, what in DEVIATIONS:
        value = _get(settings, key)
        if value is None:
            continue
        rows.append({"setting": key, "value": value, "reference": reference, "as_reference": value == reference,
                     "what": what})
    return rows


def lambda_sweep_table(masks: list[dict], curves: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """One row per (method, seed, lambda): the mask's size (all components, heads, neurons), how DCM ran
    (sum of lr * lambda, epochs, early stop) and the w/ mask update's best validation gain with it.

    ``masks``: per mask ``{"method", "seed", "lambda", "meta": mask metadata, "counts": its counts table}``;
    ``curves[(method, seed)]``: the w/ mask update's curve.parquet (absent: no update ran yet).
    """
    rows = []
    for m in masks:
        meta, counts = m["meta"], m["counts"]
        heads = counts[counts["kind"] != "mlp"]
        neurons = counts[counts["kind"] == "mlp"]
        row = {"method": m["method"], "seed": m["seed"], "lambda": float(m["lambda"]),
               "sum_lr_lambda": meta.get("sum_lr_lambda"), "epochs_run": meta.get("epochs_run"),
               "stopped_early": meta.get("stopped_early"), "percent_components": float(meta["percent"]),
               "heads_selected": int(heads["selected"].sum()), "heads_total": int(heads["total"].sum()),
               "neurons_selected": int(neurons["selected"].sum()), "neurons_total": int(neurons["total"].sum()),
               "val_gain": None, "best_lr": None, "best_step": None}
        row["percent_heads"] = 100.0 * row["heads_selected"] / max(row["heads_total"], 1)
        row["percent_neurons"] = 100.0 * row["neurons_selected"] / max(row["neurons_total"], 1)
        curve = curves.get((m["method"], m["seed"]))
        if curve is not None:
            base = curve.loc[curve["config"] == "base", "val_accuracy"]
            mine = curve[(curve["lambda"].astype(float) == row["lambda"]) & curve["val_accuracy"].notna()]
            if len(base) and len(mine):
                top = mine.loc[mine["val_accuracy"].idxmax()]
                row.update(val_gain=100.0 * float(top["val_accuracy"] - base.iloc[0]), best_lr=float(top["lr"]),
                           best_step=int(top["step"]))
        rows.append(row)
    cols = ["method", "seed", "lambda", "sum_lr_lambda", "epochs_run", "stopped_early", "percent_components",
            "heads_selected", "heads_total", "percent_heads", "neurons_selected", "neurons_total",
            "percent_neurons", "val_gain", "best_lr", "best_step"]
    return pd.DataFrame(rows, columns=cols).sort_values(["method", "seed", "lambda"], ignore_index=True)


def read_lambda_sweep(root: Path, seeds: list[int], methods: list[str]) -> pd.DataFrame:
    """``lambda_sweep_table`` from ``seed<S>/<method>/masks/lambda<L>.safetensors`` (+ counts) and
    ``seed<S>/<method>/mask/curve.parquet`` under ``root``."""
    from cca.circuits.mask_file import load_mask
    from cca.io import read_parquet

    masks, curves = [], {}
    for s in seeds:
        for m in methods:
            for path in sorted((root / f"seed{s}" / m / "masks").glob("lambda*.safetensors")):
                counts = path.with_name(path.name.removesuffix(".safetensors") + ".counts.parquet")
                if not counts.exists():
                    continue
                meta = load_mask(path)[1]
                masks.append({"method": m, "seed": s, "lambda": meta["lambda"], "meta": meta,
                              "counts": read_parquet(counts)})
            curve = root / f"seed{s}" / m / "mask" / "curve.parquet"
            if curve.exists():
                curves[(m, s)] = read_parquet(curve)
    return lambda_sweep_table(masks, curves)


def lambda_sweep_figure(sweep: pd.DataFrame, path: str | Path) -> None:
    """% components (log scale) against the best validation gain of the w/ mask update with that mask, one
    line per (method, seed)."""
    from cca.circuits.figures import _pyplot, _save

    done = sweep.dropna(subset=["val_gain"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if done.empty:
        ax.text(0.5, 0.5, "no w/ mask update validated a DCM mask", ha="center", transform=ax.transAxes)
    for (method, seed), g in done.groupby(["method", "seed"], sort=True):
        g = g.sort_values("percent_components")
        ax.plot(g["percent_components"], g["val_gain"], marker="o", label=f"{method}, seed {seed}")
        for r in g.to_dict("records"):
            ax.annotate(f"{r['lambda']:g}", (r["percent_components"], r["val_gain"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axvline(2.0, color="grey", lw=0.8, ls="--")
    if not done.empty:
        ax.set_xscale("log")
    ax.set_xlabel("% of components in the DCM mask (labels: lambda)")
    ax.set_ylabel("best validation gain of CCA w/ mask (points)")
    ax.set_title("lambda sweep: mask size against validation gain")
    if not done.empty:
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def versus_random(items: dict, table, methods: list[str], iters: int, set_name: str = "test") -> dict:
    """Per method with a random-mask control: the w/ mask minus the random-mask accuracy on ``set_name`` in
    points, with the paired bootstrap 95% interval over the same (seed, question) pairs."""
    from cca.evaluate.table import math_delta_intervals

    out = {}
    means = dict(zip(table["configuration"], table[f"{set_name}_mean"]))
    for m in methods:
        mask, random = f"cca-{m}-mask", f"cca-{m}-random"
        if mask not in items or random not in items:
            continue
        ci = math_delta_intervals({"original": items[random], mask: items[mask]}, iters=iters)
        row = ci[ci["configuration"] == mask].iloc[0]
        out[m] = {"diff": 100.0 * (means[mask] - means[random]), "lo": float(row[f"{set_name}_delta_lo"]),
                  "hi": float(row[f"{set_name}_delta_hi"])}
    return out


def _interval(row: pd.Series | dict, col: str) -> str:
    return f"{row[col]:+.1f} points [{row[f'{col}_lo']:+.1f}, {row[f'{col}_hi']:+.1f}]"


def findings(table: pd.DataFrame, dcm_vs_random: dict[str, dict], set_name: str = "test") -> list[str]:
    """The report's answer, one sentence per method: does the DCM mask beat the random mask of the same size,
    and does CCA w/ mask gain at most 2% of components. ``table``: the results table; ``dcm_vs_random[method]``:
    ``{"diff", "lo", "hi"}`` in points, the w/ mask minus the random-mask test accuracy (paired bootstrap).
    A difference counts only when its 95% interval excludes zero."""
    out = []
    rows = {r["configuration"]: r for r in table.to_dict("records")}
    col = f"{set_name}_delta"
    for conf, r in rows.items():
        if not (conf.startswith("cca-") and conf.endswith("-mask")):
            continue
        method = conf.removeprefix("cca-").removesuffix("-mask")
        pct = r["percent_components"]
        kept = f"{r['updated_seeds']} of {r['seeds']} seeds kept an update"
        if pd.isna(r.get(f"{col}_lo")):
            verdict = "has no interval"
        elif r[f"{col}_lo"] > 0:
            verdict = "**gains**"
        elif r[f"{col}_hi"] < 0:
            verdict = "**loses**"
        else:
            verdict = "shows **no detectable change**"
        size = "at most" if pct <= 2.0 else "more than"
        text = (f"**{method}**: CCA w/ mask {verdict} on {set_name} ({_interval(r, col)}) with {pct:.2f}% of "
                f"components ({size} 2%; {kept}).")
        vr = dcm_vs_random.get(method)
        if vr is not None:
            if vr["lo"] > 0:
                beat = "beats the random mask of the same size"
            elif vr["hi"] < 0:
                beat = "is worse than the random mask of the same size"
            else:
                beat = "is not distinguishable from the random mask of the same size"
            text += (f" The DCM mask {beat}: {vr['diff']:+.1f} points [{vr['lo']:+.1f}, {vr['hi']:+.1f}] "
                     "(w/ mask minus random mask, paired over the same test questions).")
        else:
            text += " No random-mask control ran (`controls`)."
        out.append(text)
    return out
