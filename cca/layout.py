"""Which configurations a run has, and where each one's artifacts live under results/<model>/.

A configuration is the original model, CCA with a localization method and an update variant, or LoRA:
``original``, ``cca-<method>-<variant>``, ``lora``. ``VARIANTS`` is the one list of update variants: the
w/ mask and w/o mask updates always run; the controls run where ``update.controls`` names them. Each seed of
a configuration has one folder (``run_dir``): ``seed<S>/original``, ``seed<S>/<method>/<variant>``,
``seed<S>/lora``. The configurations' order (the table's and the report's), their folders and labels, the
workflow's ``variant`` and ``run`` wildcards, its update rules and the schema's enums for
``general.configurations`` and ``update.controls`` are all derived from it.
"""
from __future__ import annotations

from dataclasses import dataclass

from cca.localize.methods import METHODS


@dataclass(frozen=True)
class Variant:
    """One way of updating the model after a localization method (configuration ``cca-<method>-<name>``)."""
    name: str                  # the configuration's last part and the folder seed<S>/<method>/<name>
    label: str                 # the report's words for it, after "CCA <method>, "
    rule: str                  # its update rule in workflow/rules/update.smk
    mask: str | None           # what selects the rows it trains: "dcm" (the DCM mask of every lambda),
    #                            "random" (a random mask as large as the w/ mask update's chosen one, per
    #                            layer and kind); None: it trains whole weights
    frozen: tuple[str, ...]    # without a mask: the parameter groups (cca.models.parameter_groups) it leaves
    #                            as they are; every other parameter is trained
    control: bool              # runs only where update.controls names it


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("mask", "w/ mask", rule="targeted_update", mask="dcm", frozen=(), control=False),
    Variant("nomask", "w/o mask", rule="full_update", mask=None, frozen=(), control=False),
    Variant("random", "random mask", rule="random_update", mask="random", frozen=(), control=True),
    Variant("body", "w/o mask, body only", rule="body_update", mask=None, frozen=("embedding", "norm"),
            control=True),
)}
# the variant whose chosen mask a random mask copies the size of
RANDOM_MASK_SOURCE = "mask"


def control_names() -> list[str]:
    """The variants ``update.controls`` may name, in table order."""
    return [v.name for v in VARIANTS.values() if v.control]


def variants(controls) -> list[Variant]:
    """The variants of a run: those that always run and the controls in ``controls``, in table order."""
    return [v for v in VARIANTS.values() if not v.control or v.name in controls]


def configurations(methods, controls) -> list[str]:
    """Every configuration of a run with these localization methods and control variants, in table order."""
    return ["original"] + [f"cca-{m}-{v.name}" for m in methods for v in variants(controls)] + ["lora"]


def all_configurations() -> list[str]:
    """The configurations of a run with every known localization method and every control."""
    return configurations(METHODS, control_names())


def variant_of(configuration: str) -> tuple[str, Variant] | None:
    """(method, variant) of a ``cca-<method>-<variant>`` configuration; None for the others."""
    if not configuration.startswith("cca-"):
        return None
    _, method, variant = configuration.split("-")
    return method, VARIANTS[variant]


def run_dir(configuration: str, seed: int) -> str:
    cca = variant_of(configuration)
    if cca is None:
        return f"seed{seed}/{configuration}"
    method, variant = cca
    return f"seed{seed}/{method}/{variant.name}"


def label(configuration: str) -> str:
    """The report's name of a configuration."""
    if configuration == "lora":
        return "LoRA"
    cca = variant_of(configuration)
    if cca is not None:
        method, variant = cca
        return f"CCA {method}, {variant.label}"
    return configuration


def general_configurations(methods, controls, picked) -> list[str]:
    """The configurations that get the general evaluation: ``picked`` (None: all) among the run's, always
    with the original (every difference is taken against it), in table order."""
    confs = configurations(methods, controls)
    chosen = set(picked or confs) | {"original"}
    return [c for c in confs if c in chosen]


def general_seeds(seeds, picked) -> list[int]:
    """The seeds whose models get the general evaluation: ``picked`` (None: the first seed) among ``seeds``."""
    return [s for s in (picked if picked is not None else seeds[:1]) if s in seeds]
