"""The random-mask control: a mask as large as a DCM mask at every site, its components drawn at random.

A site is one (layer, kind) of the component map (``layers.<i>.<kind>``, kind q, k, v or mlp). The random
mask selects at each site exactly as many components as the source mask does there, drawn uniformly
without replacement among that site's components. Sites are drawn in sorted name order from one numpy
Generator, so a seed gives the same mask whatever order the source's sites come in.
"""
from __future__ import annotations

import numpy as np
import torch

# Mixed with the run seed into the draw's seed, so that the random mask is not drawn from the same stream
# as anything else seeded with the run seed.
RANDOM_MASK_STREAM = 0x52414E44


def random_mask_seed(run_seed: int) -> int:
    """The seed of a run's random mask: fixed by the run seed, different for every run seed."""
    return int(np.random.SeedSequence([run_seed, RANDOM_MASK_STREAM]).generate_state(1)[0])


def random_mask(selected_like: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Per site, a bool tensor of the source's shape with as many True entries as the source, placed at random."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(selected_like):
        source = selected_like[name].bool().flatten()
        k = int(source.sum())
        pick = rng.choice(source.numel(), size=k, replace=False)
        drawn = torch.zeros(source.numel(), dtype=torch.bool)
        drawn[torch.as_tensor(pick, dtype=torch.long)] = True
        out[name] = drawn.reshape(selected_like[name].shape)
    return out


def site_counts(selected: dict[str, torch.Tensor]) -> dict[str, int]:
    """Selected components per site."""
    return {name: int(sel.sum()) for name, sel in sorted(selected.items())}
