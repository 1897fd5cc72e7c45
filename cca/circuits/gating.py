"""Gating components at the last position: PyTorch hooks (default) and nnsight (the paper's tool).

A gate multiplies one component's activation at the **last position only** by a scale; every other
position is untouched. Scales come per site as a tensor of shape (count,), e.g. ``2 * mask``.
Both backends give the same logits and gradients (tests hold them together).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Mapping

import torch

from cca.models.components import ComponentMap, GateSite


def scale_last_position(x: torch.Tensor, scale: torch.Tensor, site: GateSite) -> torch.Tensor:
    """``x`` with its last position's components multiplied by ``scale`` (count,)."""
    if site.layout == "bhtd":                        # x: (batch, n, pos, head_dim)
        last = x[:, :, -1:, :] * scale.view(1, -1, 1, 1).to(x.device, x.dtype)
        return torch.cat([x[:, :, :-1, :], last], dim=2)
    if site.layout == "bt(hd)":                      # x: (batch, pos, n * head_dim)
        s = scale.to(x.device, x.dtype).repeat_interleave(site.width)
    else:                                            # "btf", x: (batch, pos, d_ff)
        s = scale.to(x.device, x.dtype)
    last = x[:, -1:, :] * s
    return torch.cat([x[:, :-1, :], last], dim=1)


@contextmanager
def hook_gates(model, cmap: ComponentMap, scales: Mapping[str, torch.Tensor]):
    """Within the block, every forward of ``model`` gates the sites named in ``scales``."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for site in cmap.sites:
            if site.name not in scales:
                continue
            s = scales[site.name]
            mod = modules[site.module]
            if site.where == "output":
                handles.append(mod.register_forward_hook(
                    lambda m, args, out, s=s, site=site: scale_last_position(out, s, site)))
            else:
                handles.append(mod.register_forward_pre_hook(
                    lambda m, args, s=s, site=site: (scale_last_position(args[0], s, site), *args[1:])))
        yield
    finally:
        for h in handles:
            h.remove()


def execution_order(model, cmap: ComponentMap, prefix: str = "", **inputs) -> list[str]:
    """Site names in the order the model computes them (nnsight must read them in that order).
    ``model`` may be a submodule of the mapped model whose name is ``prefix``."""
    modules = dict(model.named_modules())
    order, handles = [], []
    for site in cmap.sites:
        mod = modules[site.module[len(prefix) + 1:] if prefix else site.module]
        hook = (lambda *a, name=site.name: order.append(name))
        handles.append(mod.register_forward_hook(hook) if site.where == "output" else mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    seen = []
    for n in order:
        if n not in seen:
            seen.append(n)
    return seen


class NNsightGates:
    """The same gates through an nnsight trace of the decoder stack. ``import nnsight`` patches torch
    process-wide, so it is imported only when this backend is chosen."""

    def __init__(self, model, cmap: ComponentMap):
        from nnsight import NNsight

        from cca.models.shared_prefix import decoder

        self.model, self.cmap = model, cmap
        self.root = decoder(model)
        self.prefix = next(n for n, m in model.named_modules() if m is self.root)
        self.wrapped = NNsight(self.root)
        self.order: list[str] | None = None

    def _envoy(self, path: str):
        obj = self.wrapped
        rel = path[len(self.prefix) + 1:] if self.prefix else path
        for part in rel.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    def hidden(self, scales: Mapping[str, torch.Tensor], **inputs) -> torch.Tensor:
        """Final hidden states (batch, pos, hidden) of the decoder with the gates applied."""
        if self.order is None:
            self.order = execution_order(self.root, self.cmap, prefix=self.prefix, **_shallow(inputs))
        sites = [self.cmap.site(n) for n in self.order if n in scales]
        with self.wrapped.trace(**inputs):
            for site in sites:
                env = self._envoy(site.module)
                if site.where == "output":
                    env.output = scale_last_position(env.output, scales[site.name], site)
                else:
                    env.input = scale_last_position(env.input, scales[site.name], site)
            hidden = self.wrapped.output.last_hidden_state.save()
        return hidden


def _shallow(inputs: dict) -> dict:
    """Inputs for a probe forward that must not mutate a cache passed in ``inputs``."""
    from cca.models.shared_prefix import cache_view

    out = dict(inputs)
    if out.get("past_key_values") is not None:
        out["past_key_values"] = cache_view(out["past_key_values"])
    return out
