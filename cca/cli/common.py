"""What several subcommands share: reading tables, thread count, shard fingerprints, reuse decisions."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cca.errors import CCAError


def torch_threads() -> None:
    """Use every core this process may run on."""
    import os

    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


def read_table(path: str):
    """A Parquet table, or a JSON/JSONL file of records."""
    import pandas as pd

    from cca.io import read_parquet

    p = Path(path)
    if p.suffix in (".jsonl", ".json"):
        if not p.is_file():
            raise CCAError(f"{p} does not exist")
        return pd.read_json(p, lines=p.suffix == ".jsonl")
    return read_parquet(p)


def named_paths(items: list[str], flag: str) -> dict[str, str]:
    """``NAME=PATH`` arguments as a mapping."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CCAError(f"{flag} takes NAME=PATH, got '{item}'")
        out[name] = path
    return out


def chosen_base(update_json: str | None) -> bool:
    """Whether an update's selection kept the base model (its merged weights are the base weights)."""
    if not update_json:
        return False
    return json.loads(Path(update_json).read_text()).get("chosen") == "base"


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def shard_fingerprint(settings: dict, checkpoint, inputs, *extra) -> str:
    """What the shards of an interrupted run depend on: the settings, the checkpoint (each file's name,
    size and modification time) and the contents of the input tables. Instance ids alone would not do:
    other instances (instances.seed, per_template) reuse the same ids, and a shard of the old ones must
    not be taken as finished work."""
    from cca.models.registry import checkpoint_path

    roots = {Path(checkpoint), checkpoint_path(checkpoint)}
    files = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                   for root in roots for f in root.rglob("*") if f.is_file())
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in inputs]
    return _fingerprint(settings, files, digests, *extra)


def open_validator(args, generation, eval_dtype: str, model, tokenizer):
    """The validator of an update or LoRA job: the val split (``--splits``) of the greedy traces (``--greedy``),
    weights for vLLM written next to ``--out``."""
    from cca.io import read_parquet
    from cca.update.validation import Validator, validation_rows

    val = validation_rows(read_parquet(args.greedy), read_parquet(args.splits), args.splits)
    return Validator(val, generation, eval_dtype, args.checkpoint, model, tokenizer, Path(args.out).parent)


def first_seed_choice(args):
    """(lambda, lr) the first seed's sweep chose (``--sweep``: its update.json, ``--sweep-curve``: its curve),
    or None without ``--sweep`` (this seed runs the whole sweep)."""
    from cca.io import read_parquet
    from cca.update.sweep import chosen_candidate

    if not args.sweep:
        return None
    if not args.sweep_curve:
        raise CCAError("--sweep needs --sweep-curve (the first seed's curve.parquet)")
    best = json.loads(Path(args.sweep).read_text())["best"]
    return chosen_candidate(best, read_parquet(args.sweep_curve).to_dict("records"))


def add_paths(parser, *names: str) -> None:
    """Required path options (``--checkpoint``, ``--out`` ...)."""
    for name in names:
        parser.add_argument(name, required=True)
