"""Trainable fp32 deltas on selected rows (or columns) of frozen Linear weights: the targeted update.

``RowDelta`` wraps a ``nn.Linear``: ``y = base(x)`` plus, for the selected rows r, ``x @ delta[r].T``
(rows of q/k/v/up/gate_proj), or for selected columns c, ``x[..., c] @ delta.T`` (columns of
down_proj). The base weight is never written while training; only ``delta`` (fp32, shape
(len(index), in) or (out, len(index))) has gradients. ``merge`` adds the delta into the base weight
(saving the original rows), ``unmerge`` restores them bit for bit.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from cca.errors import CCAError


class RowDelta(nn.Module):
    def __init__(self, base: nn.Linear, axis: str, index):
        super().__init__()
        if axis not in ("rows", "cols"):
            raise ValueError(f"axis must be rows or cols, not {axis}")
        self.base, self.axis = base, axis
        self.register_buffer("index", torch.as_tensor(list(index), dtype=torch.long, device=base.weight.device),
                             persistent=False)
        out_f, in_f = base.weight.shape
        shape = (len(self.index), in_f) if axis == "rows" else (out_f, len(self.index))
        self.delta = nn.Parameter(torch.zeros(shape, dtype=torch.float32, device=base.weight.device))
        self._saved: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self._saved is not None:          # merged: the base weight already holds the delta
            return y
        if self.axis == "rows":              # extra: (..., len(index)) added to the selected outputs
            extra = nn.functional.linear(x.float(), self.delta)
            return y.index_add(y.dim() - 1, self.index, extra.to(y.dtype))
        extra = nn.functional.linear(x.index_select(x.dim() - 1, self.index).float(), self.delta)
        return y + extra.to(y.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self._saved is not None:
            return
        w = self.base.weight
        if self.axis == "rows":
            self._saved = w[self.index].clone()
            w[self.index] = (self._saved.float() + self.delta).to(w.dtype)
        else:
            self._saved = w[:, self.index].clone()
            w[:, self.index] = (self._saved.float() + self.delta).to(w.dtype)

    @torch.no_grad()
    def unmerge(self) -> None:
        if self._saved is None:
            return
        if self.axis == "rows":
            self.base.weight[self.index] = self._saved
        else:
            self.base.weight[:, self.index] = self._saved
        self._saved = None


def _parent(model, name: str):
    parent_name, _, child = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, child


def attach(model, slices: Mapping[str, tuple[str, list[int]]]) -> dict[str, RowDelta]:
    """Wrap every weight in ``slices`` (``{"...q_proj.weight": ("rows", [..])}``); freeze everything else."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = {}
    for weight_name, (axis, index) in slices.items():
        module_name = weight_name.removesuffix(".weight")
        try:
            base = model.get_submodule(module_name)
        except AttributeError as e:
            raise CCAError(f"update target {module_name} is not a module of the model") from e
        if isinstance(base, RowDelta):
            raise CCAError(f"{module_name} already carries a row delta: detach it first")
        if not isinstance(base, nn.Linear):
            raise CCAError(f"update target {module_name} is a {type(base).__name__}, not a Linear layer")
        parent, child = _parent(model, module_name)
        rd = RowDelta(base, axis, index)
        setattr(parent, child, rd)
        wrapped[weight_name] = rd
    return wrapped


def detach(model, wrapped: Mapping[str, RowDelta]) -> None:
    """Put the base Linear layers back (unmerged)."""
    for weight_name, rd in wrapped.items():
        rd.unmerge()
        parent, child = _parent(model, weight_name.removesuffix(".weight"))
        setattr(parent, child, rd.base)


def merge(wrapped: Mapping[str, RowDelta]) -> None:
    for rd in wrapped.values():
        rd.merge()


def unmerge(wrapped: Mapping[str, RowDelta]) -> None:
    for rd in wrapped.values():
        rd.unmerge()


def delta_tensors(wrapped: Mapping[str, RowDelta]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, axes) for a sparse-delta safetensors file: ``<weight>.delta`` and ``<weight>.index``."""
    tensors, axes = {}, {}
    for name, rd in wrapped.items():
        tensors[f"{name}.delta"] = rd.delta.detach().cpu().clone().contiguous()
        tensors[f"{name}.index"] = rd.index.cpu().clone()
        axes[name] = rd.axis
    return tensors, axes


def read_delta(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, axes) of a delta file written from ``delta_tensors`` (the axes in its metadata; both empty when
    the update kept the base model)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        axes = json.loads((f.metadata() or {}).get("axes", "{}"))
        return {k: f.get_tensor(k) for k in f.keys()}, axes


def load_delta(model, tensors: Mapping[str, torch.Tensor], axes: Mapping[str, str]) -> dict[str, RowDelta]:
    """Attach the deltas of a sparse-delta file to ``model`` (unmerged)."""
    slices = {name: (axis, tensors[f"{name}.index"].tolist()) for name, axis in axes.items()}
    wrapped = attach(model, slices)
    with torch.no_grad():
        for name, rd in wrapped.items():
            rd.delta.copy_(tensors[f"{name}.delta"])
    return wrapped


class merged:
    """``with merged(model, wrapped):`` the model is a plain model with the deltas in its weights
    (for ``save_pretrained`` or a weight reload); on exit the wrappers and base rows are restored."""

    def __init__(self, model, wrapped: Mapping[str, RowDelta]):
        self.model, self.wrapped = model, wrapped

    def __enter__(self):
        for name, rd in self.wrapped.items():
            rd.merge()
            parent, child = _parent(self.model, name.removesuffix(".weight"))
            setattr(parent, child, rd.base)
        return self.model

    def __exit__(self, *exc):
        for name, rd in self.wrapped.items():
            parent, child = _parent(self.model, name.removesuffix(".weight"))
            setattr(parent, child, rd)
            rd.unmerge()
        return False
