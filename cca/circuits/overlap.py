"""How much two masks agree: the Jaccard overlap of their selected components."""
from __future__ import annotations

from itertools import combinations

import torch


def jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """|A and B| / |A or B| over (site, index) of the selected components; 1.0 when both select nothing.
    Both masks must come from the same model (the same sites and sizes)."""
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("jaccard: the masks have different component sites (masks of different models?)")
    both = sum(int((a[k] & b[k]).sum()) for k in a)
    either = sum(int((a[k] | b[k]).sum()) for k in a)
    return 1.0 if either == 0 else both / either


def mean_pairwise_jaccard(masks: list[dict[str, torch.Tensor]]) -> float | None:
    """The mean Jaccard overlap over every pair of ``masks`` (None with fewer than two)."""
    pairs = list(combinations(masks, 2))
    return sum(jaccard(x, y) for x, y in pairs) / len(pairs) if pairs else None
