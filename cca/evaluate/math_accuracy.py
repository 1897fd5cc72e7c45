"""Evaluation metrics: GSM test accuracy per set and paired differences between two models.

Pure functions over tables; the rule layer (cca.cli.evaluation) generates and writes the artifacts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cca.errors import CCAError


def evaluation_instances(instances: pd.DataFrame, split: pd.DataFrame | None, per_template: int) -> pd.DataFrame:
    """The instances a model is tested on.

    With ``split`` (the main task): the instances of the seed's test split. Without (a robustness set
    such as GSM-P1/P2, which has no split): the first ``per_template`` instances of each template.
    """
    if split is not None:
        ids = split.loc[split["split"] == "test", "instance_id"]
        out = instances[instances["instance_id"].isin(set(ids))]
    else:
        out = instances.groupby("template_id", sort=False).head(per_template)
    return out.reset_index(drop=True)


def set_accuracy(rows: pd.DataFrame) -> dict:
    """Greedy exact match of one set: mean of per-template accuracies (the paper's metric), plain mean, n."""
    ok = rows[rows["error"].isna()] if "error" in rows else rows
    if ok.empty:
        return {"template_mean": float("nan"), "mean": float("nan"), "n": 0, "errors": int(len(rows))}
    return {"template_mean": float(ok.groupby("template_id")["correct"].mean().mean()),
            "mean": float(ok["correct"].mean()), "n": int(len(ok)), "errors": int(len(rows) - len(ok))}


def math_summary(results: pd.DataFrame) -> dict:
    """``{set: set_accuracy}`` for a table with a ``set`` column (test, p1, p2, ...)."""
    return {name: set_accuracy(rows) for name, rows in results.groupby("set", sort=False)}


def paired_bootstrap(a, b, iters: int = 10_000, seed: int = 0, level: float = 0.95,
                     groups=None) -> dict:
    """Difference of means ``mean(b) - mean(a)`` on paired per-item scores, with a bootstrap interval.

    Items are resampled with replacement (the same draw for both models, so the pairing is kept). With
    ``groups`` (e.g. template ids) the statistic is the mean of per-group means, as the GSM metric is,
    and whole items are still resampled. A difference is a regression or a gain only when the interval
    excludes zero.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise CCAError(f"paired bootstrap needs two equal-length score vectors, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise CCAError("paired bootstrap of an empty set of items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(iters, len(a)))
    if groups is None:
        diffs = (b[idx] - a[idx]).mean(axis=1)
        point = float(b.mean() - a.mean())
    else:
        codes, _ = pd.factorize(pd.Series(groups))
        point = _group_mean(b - a, codes, np.arange(len(a))[None, :])[0]
        diffs = _group_mean(b - a, codes, idx)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(point), "lo": float(lo), "hi": float(hi), "n": int(len(a)), "iters": iters,
            "significant": bool(lo > 0 or hi < 0)}


def _group_mean(values: np.ndarray, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean over groups of the per-group mean of ``values[idx]``, per row of ``idx`` (groups absent in a
    resample are left out of that resample's mean)."""
    k = int(codes.max()) + 1
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    g = codes[idx].ravel()
    sums = np.zeros((idx.shape[0], k))
    counts = np.zeros((idx.shape[0], k))
    np.add.at(sums, (rows, g), values[idx].ravel())
    np.add.at(counts, (rows, g), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.nanmean(means, axis=1)
