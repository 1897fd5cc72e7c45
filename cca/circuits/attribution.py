"""Direct logit attribution: what each attention head and MLP neuron writes toward the desired token.

At the last position of a prefix, the residual stream before the final norm is a sum:

    r = h_0 + sum_layers [ P_attn(o_proj(z)) + P_mlp(down_proj(m)) ]

with ``h_0`` the (scaled) embedding, ``z`` the input of o_proj (heads x head_dim), ``m`` the input of
down_proj (one value per neuron) and ``P`` the identity, or a layer's post-norm where the architecture
has them (``Architecture.post_norms``). The logit difference (desired - undesired, before any final soft
cap) is ``(W_U[d] - W_U[u]) . N(r)``. Freezing every RMS norm's scale at its value on this input (the usual
convention) makes each norm linear, ``N(v) = v * g / rms(x)``, so the difference splits exactly into one
term per head (its slice of ``z`` through its columns of o_proj), one per neuron (``m_i`` times its
column of down_proj) and the embedding's: the terms sum to the logit difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from cca.models.architectures import PROJECTIONS, architecture_of
from cca.models.components import ComponentMap


@dataclass(frozen=True)
class Attribution:
    heads: torch.Tensor       # (pairs, layers, n_heads): each query head's output
    neurons: torch.Tensor     # (pairs, layers, d_ff)
    embedding: torch.Tensor   # (pairs,)
    logit_diff: torch.Tensor  # (pairs,) desired - undesired logit before any final soft cap


def norm_gain(norm, width: int, device) -> tuple[torch.Tensor, float]:
    """(g, eps) of an RMS norm module, ``norm(v) = v * g / sqrt(mean(v^2) + eps)``: ``g`` read from its
    output on ones, so the module's own weight convention (``w`` or ``1 + w``) applies."""
    eps = getattr(norm, "eps", None)
    if eps is None:
        eps = norm.variance_epsilon
    ones = torch.ones(width, dtype=norm.weight.dtype, device=device)
    return norm(ones).float() * (1.0 + eps) ** 0.5, float(eps)


def frozen_scale(gain: tuple[torch.Tensor, float], x: torch.Tensor) -> torch.Tensor:
    """The norm of ``gain`` as the linear map it is at input ``x``: the vector ``g / rms(x)``."""
    g, eps = gain
    return g / (x.float().pow(2).mean(-1, keepdim=True) + eps).sqrt()


@torch.no_grad()
def direct_logit_attribution(model, cmap: ComponentMap, prefixes: Sequence[Sequence[int]],
                             desired: Sequence[int], undesired: Sequence[int], progress=None) -> Attribution:
    """The direct contribution of every head and neuron to the logit difference at each prefix's last position
    (one forward per prefix; ``progress``: called once per prefix)."""
    arch = architecture_of(model.config)
    layers = model.get_submodule(arch.layers)
    final_norm = model.get_submodule(arch.layers.rsplit(".", 1)[0] + ".norm")   # beside the layers
    unembed = model.get_output_embeddings().weight
    width, device = unembed.shape[1], unembed.device
    final_gain = norm_gain(final_norm, width, device)
    post_gains = [tuple(norm_gain(getattr(layer, n), width, device) for n in arch.post_norms) if arch.post_norms
                  else None for layer in layers]
    seen: dict[str, torch.Tensor] = {}

    def keep(name, which):
        def hook(module, args, output):
            seen[name] = (args[0] if which == "input" else output)[0, -1].detach()
        return hook

    handles = [layers[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("h0", args[0][0, -1].detach())),
               final_norm.register_forward_hook(keep("r", "input"))]
    for i, layer in enumerate(layers):
        attn, mlp = getattr(layer, arch.attention), getattr(layer, arch.mlp)
        for proj, part in ((getattr(attn, PROJECTIONS["o"]), "attn"), (getattr(mlp, PROJECTIONS["down"]), "mlp")):
            handles += [proj.register_forward_hook(keep(f"{i}.{part}.in", "input")),
                        proj.register_forward_hook(keep(f"{i}.{part}.out", "output"))]
    heads, neurons, embedding, total = [], [], [], []
    try:
        for ids, d, u in zip(prefixes, desired, undesired):
            seen.clear()
            model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False)
            direction = (unembed[int(d)] - unembed[int(u)]).float() * frozen_scale(final_gain, seen["r"])
            h_row, n_row = [], []
            for i, layer in enumerate(layers):
                c_attn, c_mlp = direction, direction
                if post_gains[i]:
                    c_attn = direction * frozen_scale(post_gains[i][0], seen[f"{i}.attn.out"])
                    c_mlp = direction * frozen_scale(post_gains[i][1], seen[f"{i}.mlp.out"])
                o_w = getattr(getattr(layer, arch.attention), PROJECTIONS["o"]).weight.float()   # (d, H*hd)
                down_w = getattr(getattr(layer, arch.mlp), PROJECTIONS["down"]).weight.float()  # (d, d_ff)
                z = seen[f"{i}.attn.in"].float()                                                 # (H*hd,)
                h_row.append((z * (c_attn @ o_w)).view(cmap.n_heads, cmap.head_dim).sum(-1))
                n_row.append(seen[f"{i}.mlp.in"].float() * (c_mlp @ down_w))
            heads.append(torch.stack(h_row))
            neurons.append(torch.stack(n_row))
            embedding.append(seen["h0"].float() @ direction)
            total.append(seen["r"].float() @ direction)
            if progress:
                progress()
    finally:
        for h in handles:
            h.remove()
    if not heads:
        empty = torch.zeros(0)
        return Attribution(torch.zeros(0, cmap.n_layers, cmap.n_heads), torch.zeros(0, cmap.n_layers, cmap.d_ff),
                           empty, empty)
    return Attribution(torch.stack(heads).cpu(), torch.stack(neurons).cpu(), torch.stack(embedding).cpu(),
                       torch.stack(total).cpu())


def component_attribution(attribution: Attribution, cmap: ComponentMap, name: str, index: int) -> torch.Tensor:
    """Per pair, the direct contribution of one component of the mask (``name`` such as ``layers.3.k``): a query
    head's own output; a key or value head's, the outputs of the query heads that share it; a neuron's own."""
    site = cmap.site(name)
    if site.kind == "mlp":
        return attribution.neurons[:, site.layer, index]
    if site.kind == "q":
        return attribution.heads[:, site.layer, index]
    group = cmap.n_heads // cmap.n_kv_heads
    return attribution.heads[:, site.layer, index * group:(index + 1) * group].sum(-1)
