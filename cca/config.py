"""Configuration: validation against the workflow's JSON schema and per-model settings.

The Snakefile validates ``config.yaml`` with Snakemake's ``validate``; the same
schema is applied here for the command line and for the per-model settings
(profile + overrides), with one-line messages that name the offending key.
"""
from __future__ import annotations

import copy
import functools
import math
import sys
from pathlib import Path

import yaml

from cca.errors import CCAError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
MAX_VALUES = 100_000  # values in a config, YAML aliases expanded
MAX_DEPTH = 50        # levels of nesting


@functools.cache
def _schema() -> dict:
    """The parsed schema (read once: model_settings validates against it for every rule's params), with the
    enums that registries define: localization methods (cca.localize.methods), the control variants and the
    configurations they make (cca.layout)."""
    from cca.layout import all_configurations, control_names
    from cca.localize.methods import METHODS

    schema = yaml.safe_load(SCHEMA.read_text())
    profile = schema["$defs"]["profile"]["properties"]
    profile["localization"]["properties"]["methods"]["items"] = {"enum": list(METHODS)}
    profile["controls"]["items"] = {"enum": control_names()}
    profile["general"]["properties"]["configurations"]["items"] = {"enum": all_configurations()}
    return schema


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@functools.cache
def _validator_class():
    """Draft 2020-12, except that an integer must be a Python int: JSON Schema counts 5.0 as
    an integer, but the workflow passes these values to range() and the like."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    strict = base.TYPE_CHECKER.redefine("integer", lambda checker, value: type(value) is int)
    return jsonschema.validators.extend(base, type_checker=strict)


def shape_errors(config) -> list[str]:
    """What no schema check should walk into: numbers that are not finite (.nan, .inf),
    nesting deeper than MAX_DEPTH, or more than MAX_VALUES values once YAML aliases are
    expanded (a few lines of aliases can stand for billions of values)."""
    errors, count, stack = [], 0, [((), config)]
    while stack:
        path, value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return [f"(top level): more than {MAX_VALUES} values once YAML aliases are expanded; "
                    "write the values out instead of repeating aliases"]
        if len(path) > MAX_DEPTH:
            return [f"{_key_path(path[:MAX_DEPTH])}: nested more than {MAX_DEPTH} levels deep"]
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{_key_path(path)}: {value} is not a finite number")
        elif isinstance(value, dict):
            stack.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in enumerate(value))
    return sorted(errors)


def schema_errors(config: dict, schema: dict | None = None) -> list[str]:
    """Every violation of the schema, one line each: '<key path>: <what is wrong>'."""
    schema = schema or _schema()
    validator = _validator_class()(schema)
    lines = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        msg = err.message
        if err.validator == "additionalProperties":
            msg = f"unknown key ({msg}); check the spelling against workflow/schemas/config.schema.yaml"
        elif err.validator == "oneOf" and len(err.absolute_path) == 2 and err.absolute_path[0] == "tasks":
            msg = ("give either templates (a template directory) or records (a JSONL file of question/answer "
                   "records), not both")
        lines.append(f"{_key_path(err.absolute_path)}: {msg}")
    return lines


def validate_config(config: dict, source: str = "config.yaml") -> dict:
    """Raise CCAError naming the first bad key; return the config (defaults filled by the caller)."""
    errors = shape_errors(config) or schema_errors(config)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CCAError(f"{source}: {errors[0]}{more}")
    for name, profile in config["profiles"].items():
        _check_profile(profile, f"profiles.{name}", config, source)
    for name, entry in config["models"].items():
        if entry["profile"] not in config["profiles"]:
            raise CCAError(f"{source}: models.{name}.profile: no profile named '{entry['profile']}' "
                           f"(profiles: {', '.join(map(str, config['profiles']))})")
        model_settings(config, name, source=source)
    return config


def check_config(config: dict, source: str = "config.yaml") -> None:
    """For the Snakefile: validate, and end the run with the one-line message on failure."""
    try:
        validate_config(config, source)
    except CCAError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def load_config(path: str | Path = ROOT / "config.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CCAError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise CCAError(f"{path}: not UTF-8 text (byte {e.start} cannot be read)") from None
    except OSError as e:
        raise CCAError(f"{path}: cannot be read ({e.strerror})") from None
    except RecursionError:
        raise CCAError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as e:
        raise CCAError(f"{path}: not valid YAML ({e.problem} at line {e.problem_mark.line + 1})"
                       if getattr(e, "problem_mark", None) else f"{path}: not valid YAML ({e})") from e
    if not isinstance(config, dict):
        raise CCAError(f"{path}: expected a mapping with keys models, tasks, profiles")
    return validate_config(config, source=str(path.name))


def _resolve(schema: dict, defs: dict) -> dict:
    """A schema node with its ``$ref`` (to ``#/$defs/...``) merged in; the node's own keys win."""
    while "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(value, schema: dict, defs: dict | None = None):
    """``value`` (validated against ``schema``) with every absent key that has a schema default filled in,
    at every level; the schema is the one place a default is written."""
    defs = defs if defs is not None else schema.get("$defs", {})
    schema = _resolve(schema, defs)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    props = schema.get("properties", {})
    for key, sub in props.items():
        sub = _resolve(sub, defs)
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub, defs)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in out:
            if key not in props:
                out[key] = fill_defaults(out[key], extra, defs)
    return out


def profile_default(*keys: str):
    """The schema's default of a profile setting (``profile_default("general", "bootstrap_iters")``)."""
    path = ("$defs", "profile") + tuple(p for k in keys for p in ("properties", k))
    return copy.deepcopy(schema_node(path)["default"])


def schema_node(path: tuple[str, ...]) -> dict:
    """The schema's node at ``path`` (``("$defs", "profile", "properties", "dcm")``), references resolved."""
    schema = _schema()
    defs = schema["$defs"]
    node = schema
    for key in path:
        node = _resolve(node[key], defs)
    return node


def with_schema_defaults(values: dict, path: tuple[str, ...]) -> dict:
    """``values`` with every absent key that has a default in the schema node at ``path`` filled in."""
    return fill_defaults(values, schema_node(path), _schema()["$defs"])


def profile_section(name: str, values: dict) -> dict:
    """A profile section (``dcm``, ``update``, ...) as given, every absent key with a schema default filled in."""
    return with_schema_defaults(values, ("$defs", "profile", "properties", name))


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def model_settings(config: dict, model: str, source: str = "config.yaml") -> dict:
    """The settings ``model`` runs with: its profile, overrides merged on top, schema defaults filled in,
    its task spelled out (``task_config``)."""
    models = config["models"]
    if model not in models:
        raise CCAError(f"unknown model '{model}': {source} lists {', '.join(map(str, models))}; "
                       "add it under models (with a profile) or pick one of those")
    entry = models[model]
    settings = deep_merge(config["profiles"][entry["profile"]], entry.get("overrides") or {})
    where = f"models.{model}.overrides"
    profile_schema = dict(_schema()["$defs"]["profile"], **{"$defs": _schema()["$defs"]})
    errors = schema_errors(settings, profile_schema)
    if errors:
        raise CCAError(f"{source}: {where} gives an invalid setting: {errors[0]}")
    _check_profile(settings, where, config, source)
    settings = fill_defaults(settings, profile_schema)
    task_schema = _schema()["properties"]["tasks"]["additionalProperties"]
    settings["task_config"] = fill_defaults(config["tasks"][settings["task"]], task_schema, _schema()["$defs"])
    settings["profile"] = entry["profile"]
    settings["model"] = model
    settings["path"] = entry.get("path")
    settings["repo_id"] = entry.get("repo_id")
    settings["device_map"] = entry.get("device_map")
    return settings


def _check_profile(profile: dict, where: str, config: dict, source: str) -> None:
    if profile["task"] not in config["tasks"]:
        raise CCAError(f"{source}: {where}.task: no task named '{profile['task']}' "
                       f"(tasks: {', '.join(map(str, config['tasks']))})")
    splits = profile["splits"]
    total = splits["train"] + splits["val"] + splits["test"]
    if total > profile["instances"]["per_template"]:
        raise CCAError(f"{source}: {where}.splits: train+val+test = {total} exceeds "
                       f"instances.per_template = {profile['instances']['per_template']}")
    steps = profile["update"]["steps"]
    late = [s for s in profile["update"]["eval_steps"] if s > steps]
    if late:
        raise CCAError(f"{source}: {where}.update.eval_steps: {late} lie beyond update.steps = {steps}")
