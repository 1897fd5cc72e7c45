"""Per-template train/val/test splits of the drawn instances (pure functions over tables)."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from cca.errors import CCAError

SPLITS = ("train", "val", "test")


def split_instances(instances: pd.DataFrame, seed: int, train: int, val: int, test: int) -> pd.DataFrame:
    """Shuffle each template's instances with ``seed`` and cut them into train/val/test.

    The shuffle of a template depends only on (seed, template_id), so adding or removing
    templates never changes another template's split. Returns the instances that fall in a
    split, with columns ``split`` and ``seed`` added, ordered by split, template, index.
    """
    need = train + val + test
    parts = []
    for template_id, group in instances.groupby("template_id", sort=True):
        if len(group) < need:
            raise CCAError(f"template {template_id} has {len(group)} instances but the splits need {need} "
                           "(train+val+test): raise instances.per_template or lower the split sizes")
        rng = np.random.default_rng([seed, zlib.crc32(str(template_id).encode())])
        order = group.sort_values("index").iloc[rng.permutation(len(group))[:need]]
        labels = ["train"] * train + ["val"] * val + ["test"] * test
        parts.append(order.assign(split=labels, seed=seed))
    if not parts:
        raise CCAError("no instances to split: the instance table is empty")
    out = pd.concat(parts, ignore_index=True)
    out["split"] = pd.Categorical(out["split"], categories=list(SPLITS))
    out = out.sort_values(["split", "template_id", "index"], kind="stable").reset_index(drop=True)
    out["split"] = out["split"].astype(str)
    return out
