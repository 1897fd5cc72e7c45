"""results/<model>/table.csv: the paper's Tables 1, 2 and 7 in one table, from the run records.

Pure functions over small records; the rule layer (cca.cli.table) reads the artifacts.

One row per configuration: the original model, CCA {prefix, branching} x {w/ mask, w/o mask and the controls
that ran: random mask, w/o mask body only}, LoRA (cca.layout).
Accuracies are means over seeds of the mean per-template greedy exact match (the paper's metric);
``*_std`` is the standard deviation over seeds (0 with one seed; the ``seeds`` column says how many).
Deltas are in points (x100) against the original model on the same seed's test split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cca.evaluate.math_accuracy import paired_bootstrap
from cca.layout import all_configurations, variant_of


def component_percent(update: dict, configuration: str) -> float:
    """The share a configuration trained. With a mask: the chosen lambda's mask (the mean over the lambdas when
    the base model was chosen); a random mask has its source mask's counts, so its source's share. Without
    one: 100 w/o mask; with frozen parameter groups (body only), the share of parameter values it trains (a
    tied embedding / LM head counted once): parameters, not components. LoRA: its trainable share."""
    if configuration == "lora":
        return float(update["trainable_percent"])
    _, variant = variant_of(configuration)
    if variant.mask is None:
        return float(update["trainable_percent"]) if variant.frozen else 100.0
    masks = update.get("masks") or {}
    lam = update.get("best", {}).get("lambda")
    if lam is not None and str(lam) in masks:
        return float(masks[str(lam)]["percent"])
    return float(np.mean([m["percent"] for m in masks.values()])) if masks else 0.0


def run_record(configuration: str, seed: int, math: dict, update: dict | None, dataset_size: int,
               percent_components: float) -> dict:
    """One (configuration, seed): its math summary (``{set: {template_mean, ...}}``) and sizes."""
    rec = {"configuration": configuration, "seed": seed, "dataset_size": dataset_size,
           "percent_components": percent_components,
           "chosen": (update or {}).get("chosen", "base"), "best": (update or {}).get("best", {}).get("config", "")}
    for name, acc in math["sets"].items():
        rec[name] = acc["template_mean"]
        rec[f"{name}_plain"] = acc["mean"]
    return rec


def math_table(records: list[dict]) -> pd.DataFrame:
    """Aggregate per-seed records into one row per configuration (means, stds over seeds, deltas)."""
    df = pd.DataFrame(records)
    sets = [c for c in df.columns if c not in ("configuration", "seed", "dataset_size", "percent_components",
                                                 "chosen", "best") and not c.endswith("_plain")]
    orig = df[df["configuration"] == "original"].set_index("seed")
    rows = []
    known = all_configurations()
    order = [c for c in known if c in set(df["configuration"])] + sorted(set(df["configuration"]) - set(known))
    for conf in order:
        g = df[df["configuration"] == conf].sort_values("seed")
        row = {"configuration": conf, "seeds": len(g), "dataset_size": float(g["dataset_size"].mean()),
               "percent_components": float(g["percent_components"].mean()),
               "updated_seeds": int((g["chosen"] == "updated").sum()) if conf != "original" else 0}
        for name in sets:
            vals = g[name].to_numpy(dtype=float)
            row[f"{name}_mean"] = float(vals.mean())
            row[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            base = orig.loc[g["seed"], name].to_numpy(dtype=float)
            row[f"{name}_delta"] = float(100.0 * (vals - base).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def general_columns(scores: dict[str, pd.DataFrame], iters: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per configuration and benchmark: score (x100), the difference to the original in points and its
    paired bootstrap 95% interval, and whether the interval excludes zero.

    ``scores[configuration]``: per-question rows with columns benchmark, item, score; every configuration
    must have been scored on the same questions (the same subsample), or the pairing is refused.
    """
    from cca.errors import CCAError

    if "original" not in scores:
        raise CCAError("general evaluation: the original model's scores are missing")
    orig = scores["original"]
    rows = []
    for conf, df in scores.items():
        row = {"configuration": conf}
        for bench, g in df.groupby("benchmark", sort=False):
            o = orig[orig["benchmark"] == bench].set_index("item")["score"]
            s = g.set_index("item")["score"]
            if set(s.index) != set(o.index):
                raise CCAError(f"general evaluation of {conf} on {bench} scored other questions than the "
                               "original's: re-run both with the same general.questions")
            row[bench] = 100.0 * float(s.mean())
            if conf != "original":
                ci = paired_bootstrap(o.loc[s.index].to_numpy(), s.to_numpy(), iters=iters, seed=seed)
                row[f"{bench}_delta"] = 100.0 * ci["diff"]
                row[f"{bench}_delta_lo"] = 100.0 * ci["lo"]
                row[f"{bench}_delta_hi"] = 100.0 * ci["hi"]
            else:
                row[f"{bench}_delta"] = row[f"{bench}_delta_lo"] = row[f"{bench}_delta_hi"] = 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def math_delta_intervals(items: dict[str, pd.DataFrame], iters: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per configuration and set: the paired bootstrap 95% interval (points) of the accuracy difference to
    the original, columns ``<set>_delta_lo`` and ``<set>_delta_hi``.

    ``items[configuration]``: per-question rows (seed, set, instance_id, template_id, correct) of every
    seed, as in each run's math.parquet. The statistic is the table's: the mean of per-template accuracies,
    with (seed, template) as the groups, so several seeds pool into one interval. Questions are paired by
    (seed, set, instance); a configuration scored on other questions than the original is refused.
    """
    from cca.errors import CCAError

    if "original" not in items:
        raise CCAError("math evaluation: the original model's per-question results are missing")
    key = ["seed", "set", "instance_id"]
    orig = items["original"].set_index(key).sort_index()
    rows = []
    for conf, df in items.items():
        row = {"configuration": conf}
        df = df.set_index(key).sort_index()
        if not df.index.equals(orig.index):
            raise CCAError(f"math evaluation of {conf} scored other questions than the original's: "
                           "re-run both on the same splits")
        for name in orig.index.get_level_values("set").unique():
            if conf == "original":
                row[f"{name}_delta_lo"] = row[f"{name}_delta_hi"] = 0.0
                continue
            o, b = orig.xs(name, level="set"), df.xs(name, level="set")
            groups = o.index.get_level_values("seed").astype(str) + "/" + o["template_id"].astype(str)
            ci = paired_bootstrap(o["correct"].to_numpy(dtype=float), b["correct"].to_numpy(dtype=float),
                                  iters=iters, seed=seed, groups=groups.to_numpy())
            row[f"{name}_delta_lo"], row[f"{name}_delta_hi"] = 100.0 * ci["lo"], 100.0 * ci["hi"]
        rows.append(row)
    return pd.DataFrame(rows)


def results_table(records: list[dict], general: pd.DataFrame | None = None,
                  math_intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    table = math_table(records)
    if math_intervals is not None and len(math_intervals):
        table = table.merge(math_intervals, on="configuration", how="left")
        order = [c for c in table.columns if not c.endswith(("_delta_lo", "_delta_hi"))]
        for c in [c for c in order if c.endswith("_delta")]:     # each interval right after its delta
            i = order.index(c) + 1
            order[i:i] = [x for x in (f"{c}_lo", f"{c}_hi") if x in table.columns]
        table = table[order]
    if general is not None and len(general):
        table = table.merge(general, on="configuration", how="left")
    return table.replace({np.inf: np.nan, -np.inf: np.nan})
