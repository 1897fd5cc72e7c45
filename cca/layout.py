"""Which configurations a run has, and where each one's artifacts live under results/<model>/.

A configuration is the original model, CCA with each localization method w/ and w/o mask, or LoRA:
``original``, ``cca-<method>-mask``, ``cca-<method>-nomask``, ``lora``. Each seed of a configuration
has one folder (``run_dir``): ``seed<S>/original``, ``seed<S>/<method>/<variant>``, ``seed<S>/lora``.
"""
from __future__ import annotations

from cca.localize.methods import METHODS

VARIANTS = ("mask", "nomask")


def configurations(methods) -> list[str]:
    """Every configuration of a run with these localization methods, in table order."""
    return ["original"] + [f"cca-{m}-{v}" for m in methods for v in VARIANTS] + ["lora"]


def all_configurations() -> list[str]:
    """The configurations of a run with every known localization method."""
    return configurations(METHODS)


def run_dir(configuration: str, seed: int) -> str:
    if configuration in ("original", "lora"):
        return f"seed{seed}/{configuration}"
    _, method, variant = configuration.split("-")
    return f"seed{seed}/{method}/{variant}"


def label(configuration: str) -> str:
    """The report's name of a configuration."""
    if configuration == "lora":
        return "LoRA"
    if configuration.startswith("cca-"):
        _, method, variant = configuration.split("-")
        return f"CCA {method}, {'w/' if variant == 'mask' else 'w/o'} mask"
    return configuration


def general_configurations(methods, picked) -> list[str]:
    """The configurations that get the general evaluation: ``picked`` (None: all), always with the original
    (every difference is taken against it), in table order."""
    confs = configurations(methods)
    chosen = set(picked or confs) | {"original"}
    return [c for c in confs if c in chosen]


def general_seeds(seeds, picked) -> list[int]:
    """The seeds whose models get the general evaluation: ``picked`` (None: the first seed) among ``seeds``."""
    return [s for s in (picked if picked is not None else seeds[:1]) if s in seeds]
