"""Which part of a model each parameter belongs to, read from its module tree, and the gradient's share by part.

Groups (``GROUPS``), the first that applies:

- ``embedding``: a parameter of an ``nn.Embedding`` module (the input embedding, subclasses included) or of
  the output head (``model.get_output_embeddings()``); on a tied model the head is the embedding's weight;
- ``norm``: a parameter of a module whose class name contains ``Norm`` (RMSNorm, LayerNorm, the q/k norms);
- ``attention`` / ``mlp``: the rest of a decoder layer's attention or MLP submodule (where the architecture
  table, cca.models.architectures, puts the layers and their submodules);
- ``other``: anything else.

Names are those of ``model.named_parameters()``, which lists a tied weight once, under its first name.
"""
from __future__ import annotations

from typing import Mapping

from torch import nn

from cca.errors import CCAError
from cca.models.architectures import architecture_of

GROUPS = ("embedding", "norm", "attention", "mlp", "other")
NORM_MARKER = "Norm"   # in the class name of every normalisation module of the supported architectures


def _module_group(module: nn.Module, head: nn.Module | None) -> str | None:
    if isinstance(module, nn.Embedding) or module is head:
        return "embedding"
    if NORM_MARKER in type(module).__name__:
        return "norm"
    return None


def _layer_part(name: str, layers: str, attention: str, mlp: str) -> str:
    if not name.startswith(f"{layers}."):
        return "other"
    parts = name[len(layers) + 1:].split(".")   # <layer index>.<submodule>....
    if len(parts) > 2 and parts[1] == attention:
        return "attention"
    if len(parts) > 2 and parts[1] == mlp:
        return "mlp"
    return "other"


def parameter_groups(model) -> dict[str, str]:
    """``{parameter name: group}`` for every parameter of ``model`` (see the module docstring)."""
    arch = architecture_of(model.config)
    head = model.get_output_embeddings()
    by_module = {}
    for module in model.modules():
        group = _module_group(module, head)
        if group:
            for p in module.parameters(recurse=False):
                by_module[id(p)] = group
    return {name: by_module.get(id(p)) or _layer_part(name, arch.layers, arch.attention, arch.mlp)
            for name, p in model.named_parameters()}


def names_in(groups: Mapping[str, str], wanted) -> frozenset[str]:
    """The parameters of ``groups`` ({name: group}) that belong to one of the groups in ``wanted``."""
    unknown = set(wanted) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown parameter groups {sorted(unknown)}: one of {', '.join(GROUPS)}")
    return frozenset(n for n, g in groups.items() if g in wanted)


def parameter_counts(model, frozen: frozenset[str]) -> tuple[int, int]:
    """(trained, total) parameter values when every parameter but those in ``frozen`` is trained; a tied
    weight counts once."""
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    return sum(n for name, n in sizes.items() if name not in frozen), sum(sizes.values())


def gradient_shares(squares: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """Each group's share of the squared gradient norm: ``squares`` is {parameter name: sum of its squared
    gradient}, ``groups`` {parameter name: group}; every group of ``GROUPS`` is listed, and the shares sum to 1."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for name, value in squares.items():
        totals[groups[name]] += float(value)
    total = sum(totals.values())
    if not total > 0:
        raise CCAError("the loss has no gradient at the base weights (every squared gradient is 0): "
                       "check the Error-Localization pairs")
    return {g: v / total for g, v in totals.items()}
