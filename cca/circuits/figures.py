"""Figures of a DCM mask: selected heads per layer (heatmap), selected neurons per layer (bars) and the
selected count over training steps (curve)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cca.io import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def heads_heatmap(selected: dict, cmap, path: str | Path, title: str = "") -> None:
    """One panel per head type (Q, K, V): layers x heads, a cell filled when the head is selected."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, max(3, 0.25 * cmap.n_layers + 1.5)), squeeze=False)
    for ax, kind in zip(axes[0], ("q", "k", "v")):
        grid = np.stack([selected[f"layers.{i}.{kind}"].numpy().astype(float) for i in range(cmap.n_layers)])
        ax.imshow(grid, aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{kind.upper()} heads ({int(grid.sum())}/{grid.size})")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(grid.shape[1]))
    fig.suptitle(title)
    _save(plt, fig, path)


def neurons_bars(counts: pd.DataFrame, path: str | Path, title: str = "") -> None:
    plt = _pyplot()
    mlp = counts[counts["kind"] == "mlp"].sort_values("layer")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(mlp["layer"], mlp["selected"], color="tab:green")
    ax.set_xlabel("layer")
    ax.set_ylabel("selected MLP neurons")
    total = int(mlp["total"].iloc[0]) if len(mlp) else 0
    ax.set_title(f"{title} (of {total} per layer)".strip())
    _save(plt, fig, path)


def selected_curve(history: pd.DataFrame, total: int, path: str | Path, title: str = "") -> None:
    """Selected components after each DCM step (``history``: one row per step, column ``selected``) on a log
    scale (a sparse mask's tail is three decades below the start), with half of all components marked: the
    early stop counts flat steps only below that line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = range(1, len(history) + 1)
    ax.plot(steps, history["selected"], color="tab:green")
    ax.axhline(total / 2, color="grey", linestyle="--", linewidth=1, label=f"half of {total}")
    ax.set_xlabel("step")
    ax.set_ylabel("selected components (log scale)")
    ax.set_yscale("log")
    ax.set_ylim(max(1, int(history["selected"].min()) / 2), total * 1.5)
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def validation_curves(curve: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Validation accuracy against step, one line per (lambda, lr) configuration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    evald = curve.dropna(subset=["val_accuracy"])
    for key, g in evald.groupby("config", sort=False):
        ax.plot(g["step"], g["val_accuracy"], marker="o", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("validation accuracy (mean per template)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(plt, fig, path)
