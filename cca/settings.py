"""Settings objects: a frozen dataclass per config section and one per workflow stage.

A model's settings (``cca.config.model_settings``: profile + overrides, validated, every schema default
filled in) are the one source. Each stage's object is built from them once (``from_model``); the rule
passes it to the ``cca`` command as JSON (its ``params``, so a change re-runs exactly the stages that
depend on it), and the command reads it back into the same class (``from_json``).

Defaults live in ``workflow/schemas/config.schema.yaml`` only: no field here has one. A config section's
class names its place in the schema (``schema_path``), and reading it fills in the schema's defaults of
absent keys, so a hand-written ``--settings`` may leave them out. A field typed ``X | None`` may be absent
(its comment says how the stage reads None); any other absent field is an error naming it.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import ClassVar

from cca.errors import CCAError


class Settings:
    """Conversion of a settings dataclass from and to plain data (nested sections included)."""

    schema_path: ClassVar[tuple[str, ...] | None] = None   # a config section's node in the schema
    # fields left out of to_dict while None: a field added for a new kind of input keeps every existing
    # configuration's JSON (and so every rule's params) as it was
    omitted_when_none: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None):
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise CCAError(f"{where}: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CCAError(f"{where}: unknown settings {unknown} (known: {', '.join(names)})")
        if cls.schema_path:
            from cca.config import with_schema_defaults

            data = with_schema_defaults(data, cls.schema_path)
        hints = typing.get_type_hints(cls)
        values = {}
        for name in names:
            value = data.get(name)
            if value is None and not _optional(hints[name]):
                raise CCAError(f"{where}: '{name}' is missing (see workflow/schemas/config.schema.yaml)")
            section = _section_class(hints[name])
            values[name] = section.from_dict(value, f"{where}.{name}") if section and value is not None else value
        return cls(**values)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.omitted_when_none:
                continue
            out[f.name] = value.to_dict() if isinstance(value, Settings) else _plain(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CCAError(f"--settings is not valid JSON ({e})") from e
        return cls.from_dict(data, "--settings")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _plain(value):
    """A deep copy of a field's value as plain data (what dataclasses.asdict makes of it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if isinstance(value, Settings) else dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _section_class(hint):
    """The Settings class a field holds (``X`` or ``X | None``), or None for plain values."""
    if isinstance(hint, type) and issubclass(hint, Settings):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], Settings):
            return inner[0]
    return None


def placement(settings: dict, loads_model: bool) -> str | None:
    """The model's ``device_map`` for a stage that loads it with Hugging Face (``loads_model``), else None."""
    return settings["device_map"] if loads_model else None
