"""Settings of the pivotal-token search (``localization`` of a profile)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class LocalizationConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "localization")

    methods: list | None            # names in cca.localize.methods.METHODS (None: one job's single method)
    branching_search: str           # scan (the reference's order) | bisect
    bisect_points: int | None       # bisect: prefixes completed together per round (None when scanning)
