"""The ``cca`` command: what the workflow's rules call, and what a user can run by hand.

Every subcommand writes its output atomically and turns a user error into one line
on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cca.errors import CCAError


def _cmd_prepare_model(args) -> None:
    from cca.models.registry import prepare_model

    record = prepare_model(args.model, args.out, path=args.path, repo_id=args.repo_id, seed=args.seed)
    print(f"prepared {args.model}: {record['architecture']}, {record['num_layers']} layers, "
          f"{record['num_heads']} heads ({record['num_kv_heads']} KV), d_ff {record['intermediate_size']} "
          f"-> {args.out}")


def _load_templates(directory: str, name: str | None = None, check: bool = True, perturbed: bool = False):
    """Load a template set; with ``check``, every template's defaults must reproduce its source problem.

    Templates listed in cca.templates.KNOWN_UPSTREAM_DEFECTS pass only when they fail for exactly
    their listed reason; ``perturbed`` sets (GSM-P1/P2) are checked for self-consistency only,
    since their stored question is the unperturbed GSM8K item.
    """
    from tqdm import tqdm

    from cca.templates import check_defaults, load_template_set

    d = Path(directory)
    if not d.is_dir():
        raise CCAError(f"template directory {d} does not exist: check tasks.<task>.templates in config.yaml")
    templates = load_template_set(d, name)
    if not templates:
        raise CCAError(f"template directory {d} holds no templates (*.json)")
    if check:
        for t in tqdm(templates, desc=f"checking defaults of {d.name}", unit="template", disable=None):
            check_defaults(t, against_original=not perturbed, allow_known=True)
    return templates


def _cmd_instances_generate(args) -> None:
    import pandas as pd
    from tqdm import tqdm

    from cca.io import write_parquet
    from cca.templates import UNDRAWABLE_UPSTREAM, draw_instances, instances_frame

    templates = _load_templates(args.templates, args.name, check=not args.no_check, perturbed=args.perturbed)
    skipped = [t.template_id for t in templates if t.template_id in UNDRAWABLE_UPSTREAM]
    drawable = [t for t in templates if t.template_id not in UNDRAWABLE_UPSTREAM]
    frames = [instances_frame(draw_instances(t, args.n, args.seed))
              for t in tqdm(drawable, desc="drawing instances", unit="template", disable=None)]
    df = pd.concat(frames, ignore_index=True)
    write_parquet(df, args.out)
    print(f"{len(df)} instances of {len(drawable)} templates -> {args.out}")
    if skipped:
        print(f"skipped {len(skipped)} upstream template(s) whose #answer never equals their solution's "
              f"answer (see cca/templates/known_defects.py): {', '.join(skipped)}")


def _read_table(path: str):
    import pandas as pd

    from cca.io import read_parquet

    p = Path(path)
    if p.suffix in (".jsonl", ".json"):
        if not p.is_file():
            raise CCAError(f"{p} does not exist")
        return pd.read_json(p, lines=p.suffix == ".jsonl")
    return read_parquet(p)


def _cmd_instances_verify(args) -> None:
    from cca.templates import verify_instance

    df = _read_table(args.instances)
    missing = {"template_id", "question", "answer", "variables"} - set(df.columns)
    if missing:
        raise CCAError(f"{args.instances} lacks the columns {sorted(missing)}")
    templates = {t.template_id.split("/")[-1]: t for t in _load_templates(args.templates, check=False)}
    # rows are matched to templates by file stem, so any set name prefix works
    bad = 0
    for row in df.to_dict("records"):
        key = str(row["template_id"]).split("/")[-1]
        if key not in templates:
            problems = [f"no template {row['template_id']} in {args.templates}"]
        else:
            if isinstance(row["variables"], str):
                row["variables"] = json.loads(row["variables"])
            problems = verify_instance(templates[key], row)
        if problems:
            bad += 1
            print(f"{row.get('instance_id', row['template_id'])}: {'; '.join(problems)}")
    print(f"{len(df) - bad} of {len(df)} instances valid")
    if bad:
        sys.exit(1)


def _cmd_splits(args) -> None:
    from cca.io import read_parquet, write_parquet
    from cca.tasks.splits import split_instances

    df = split_instances(read_parquet(args.instances), args.seed, args.train, args.val, args.test)
    write_parquet(df, args.out)
    counts = df["split"].value_counts().to_dict()
    print(f"seed {args.seed}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test"))
          + f" -> {args.out}")


def _cmd_config(args) -> None:
    from cca.config import load_config, model_settings

    config = load_config(args.config)
    models = [args.model] if args.model else list(config["models"])
    for m in models:
        s = model_settings(config, m)
        print(f"{m}: profile {s['profile']}, task {s['task']}, seeds {s['seeds']}, "
              f"lambdas {s['dcm']['lambdas']}, update lrs {s['update']['lrs']}")
    print(f"{args.config}: valid")


def _settings(args) -> dict:
    try:
        return json.loads(args.settings)
    except json.JSONDecodeError as e:
        raise CCAError(f"--settings is not valid JSON ({e})") from e


def _fingerprint(*parts) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def shard_fingerprint(settings: dict, checkpoint, inputs, *extra) -> str:
    """What the shards of an interrupted run depend on: the settings, the checkpoint (each file's name,
    size and modification time) and the contents of the input tables. Instance ids alone would not do:
    other instances (instances.seed, per_template) reuse the same ids, and a shard of the old ones must
    not be taken as finished work."""
    import hashlib

    from cca.models.registry import checkpoint_path

    roots = {Path(checkpoint), checkpoint_path(checkpoint)}
    files = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                   for root in roots for f in root.rglob("*") if f.is_file())
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in inputs]
    return _fingerprint(settings, files, digests, *extra)


def _cmd_traces_greedy(args) -> None:
    from cca.config import ROOT
    from cca.traces.generation import open_backend
    from cca.io import read_parquet, write_sharded
    from cca.traces.build import greedy_traces, prompt_texts, tokenize_prompts

    s = _settings(args)
    gen = s["generation"]
    instances = read_parquet(args.instances)
    backend = open_backend(args.checkpoint, seed=0, device_map=s.get("device_map"), **gen)
    prompts = tokenize_prompts(backend.tokenizer, prompt_texts(instances, s["task"], ROOT))
    instances = instances.assign(_prompt=prompts)

    def work(chunk):
        return greedy_traces(backend, chunk, list(chunk["_prompt"]), gen["max_new_tokens"], backend.max_len)

    df = write_sharded(instances, args.shard_size, args.out, shard_fingerprint(s, args.checkpoint, [args.instances]),
                       work, desc="greedy traces")
    print(f"greedy: {int(df['correct'].sum())}/{len(df)} correct ({df['correct'].mean():.3f}), "
          f"{int(df['error'].notna().sum())} errors -> {args.out}")


def _cmd_traces_accuracy(args) -> None:
    from cca.io import read_parquet, write_parquet
    from cca.traces.build import base_accuracy

    acc = base_accuracy(read_parquet(args.greedy), args.threshold)
    write_parquet(acc, args.out)
    print(f"{int(acc['train_eligible'].sum())} of {len(acc)} templates below accuracy {args.threshold} "
          f"(mean per-template accuracy {acc['accuracy'].mean():.3f}) -> {args.out}")


def _cmd_traces_opposite(args) -> None:
    from cca.traces.generation import open_backend
    from cca.io import read_parquet, write_sharded
    from cca.traces.build import opposite_traces

    s = _settings(args)
    gen, smp = s["generation"], s["sampling"]
    greedy = read_parquet(args.greedy)
    acc = read_parquet(args.accuracy)
    split = read_parquet(args.splits)
    eligible = set(acc.loc[acc["train_eligible"], "template_id"])
    targets = split[(split["split"] == "train") & split["template_id"].isin(eligible)]
    backend = open_backend(args.checkpoint, seed=args.seed, device_map=s.get("device_map"), **gen)

    def work(chunk):
        return opposite_traces(backend, greedy, chunk, smp["num_samples"], smp["temperature"],
                               smp.get("top_p", 1.0), smp.get("max_new_tokens", gen["max_new_tokens"]),
                               round_size=smp.get("round_size", 0))

    fingerprint = shard_fingerprint(s, args.checkpoint, [args.greedy, args.accuracy, args.splits], args.seed)
    df = write_sharded(targets, args.shard_size, args.out, fingerprint, work, desc="opposite traces")
    print(f"seed {args.seed}: {int(df['found'].sum())} of {len(df)} train instances have an opposite trace "
          f"(templates below threshold: {len(eligible)}) -> {args.out}")


def _cmd_localize(args) -> None:
    from cca.localize.dataset import localize, pairs_table, summary, timed
    from cca.traces.generation import open_backend
    from cca.io import read_parquet, write_json, write_parquet

    s = _settings(args)
    gen = s["generation"]
    greedy, opposite = read_parquet(args.greedy), read_parquet(args.opposite)
    pairs = pairs_table(greedy, opposite)
    if args.method == "branching" and len(pairs):
        backend = open_backend(args.checkpoint, seed=0, device_map=s.get("device_map"), **gen)
        tokenizer = backend.tokenizer
    else:
        from transformers import AutoTokenizer

        from cca.models.registry import checkpoint_path

        backend, tokenizer = None, AutoTokenizer.from_pretrained(checkpoint_path(args.checkpoint))
    df, seconds = timed(localize, pairs, args.method, tokenizer, backend, gen["max_new_tokens"],
                        s["localization"].get("branching_search", "scan"), args.batch,
                        s["localization"].get("bisect_points", 1), progress=True)
    write_parquet(df, args.out)
    if args.summary:
        write_json(summary(len(opposite), opposite, {args.method: df}, {args.method: seconds}), args.summary)
    ok = df[df["status"] == "ok"]
    print(f"{args.method}: {len(ok)} pivots from {len(pairs)} pairs "
          f"({len(opposite) - len(pairs)} train instances without an opposite trace), "
          f"{ok['completions'].mean() if len(ok) else 0:.1f} completions per pair, {seconds:.0f}s -> {args.out}")


def _stage(module: str, name: str):
    """A subcommand that imports its rule-layer function (``cca.<module>.<name>``) only when run, and
    calls it with the parsed ``--settings``."""

    def run(args) -> None:
        from importlib import import_module

        getattr(import_module(f".{module}", __package__), name)(args, _settings(args))

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cca", description="Constructive Circuit Amplification workflow commands")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare-model", help="prepare a registered model into a checkpoint directory")
    s.add_argument("model")
    s.add_argument("--out", required=True)
    s.add_argument("--path", help="hub models: a local Hugging Face checkpoint directory to use instead")
    s.add_argument("--repo-id", help="hub models: a hub id other than the registry's")
    s.add_argument("--seed", type=int, default=0, help="initialisation seed of tiny models")
    s.set_defaults(func=_cmd_prepare_model)

    inst = sub.add_parser("instances", help="GSM-Symbolic-style instances").add_subparsers(dest="action",
                                                                                              required=True)
    s = inst.add_parser("generate", help="draw N instances per template to Parquet")
    s.add_argument("--templates", required=True, help="template directory")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--name", help="template set name used in template ids (default: the directory name)")
    s.add_argument("--perturbed", action="store_true",
                   help="GSM-P1/P2-style set: check defaults for self-consistency, not against the stored question")
    s.add_argument("--no-check", action="store_true", help="skip the default-values check of every template")
    s.set_defaults(func=_cmd_instances_generate)
    s = inst.add_parser("verify", help="check instances (Parquet or JSONL) against their templates")
    s.add_argument("instances")
    s.add_argument("--templates", required=True)
    s.set_defaults(func=_cmd_instances_verify)

    s = sub.add_parser("splits", help="per-template train/val/test split for one seed")
    s.add_argument("--instances", required=True)
    s.add_argument("--seed", type=int, required=True)
    for name in ("train", "val", "test"):
        s.add_argument(f"--{name}", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_splits)

    tr = sub.add_parser("traces", help="greedy and sampled traces").add_subparsers(dest="action", required=True)
    s = tr.add_parser("greedy", help="greedy traces of every instance")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--instances", required=True)
    s.add_argument("--settings", required=True, help="JSON: {generation: ..., task: ...}")
    s.add_argument("--shard-size", type=int, default=64)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_traces_greedy)
    s = tr.add_parser("accuracy", help="per-template base accuracy and the training filter")
    s.add_argument("--greedy", required=True)
    s.add_argument("--threshold", type=float, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_traces_accuracy)
    s = tr.add_parser("opposite", help="sampled traces of opposite correctness for the train split")
    for a in ("--checkpoint", "--greedy", "--accuracy", "--splits", "--settings", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--shard-size", type=int, default=64)
    s.set_defaults(func=_cmd_traces_opposite)

    s = sub.add_parser("localize", help="Error-Localization dataset (prefix or branching method)")
    for a in ("--checkpoint", "--greedy", "--opposite", "--settings", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--method", choices=["prefix", "branching"], required=True)
    s.add_argument("--batch", type=int, default=8, help="branching: prefixes of a pair per engine round")
    s.add_argument("--summary", help="write the counts as JSON here")
    s.set_defaults(func=_cmd_localize)

    s = sub.add_parser("dcm", help="learn a DCM mask for one lambda on an Error-Localization dataset")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--dataset", required=True, help="error_localization_<method>.parquet")
    s.add_argument("--lam", type=float, required=True, help="sparsity penalty lambda")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--settings", required=True, help="JSON: {dcm: ...}")
    s.add_argument("--out", required=True, help="mask file (.safetensors); counts, history and figures go next to it")
    s.set_defaults(func=_stage("cli_stages", "cmd_dcm"))

    s = sub.add_parser("update", help="targeted update (w/ mask) or all-parameter update (w/o mask), lr sweep")
    for a in ("--checkpoint", "--dataset", "--greedy", "--splits", "--settings"):
        s.add_argument(a, required=True)
    s.add_argument("--variant", choices=["mask", "nomask"], required=True)
    s.add_argument("--masks", nargs="*", default=[], help="mask files, one per lambda (w/ mask)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="update.json; curve, delta and merged checkpoint go next to it")
    s.set_defaults(func=_stage("cli_stages", "cmd_update"))

    s = sub.add_parser("lora", help="LoRA baseline (PEFT) on the train split, lr sweep, best by validation")
    for a in ("--checkpoint", "--instances", "--splits", "--accuracy", "--greedy", "--settings"):
        s.add_argument(a, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="update.json; curve, adapter and merged checkpoint go next to it")
    s.set_defaults(func=_stage("cli_eval", "cmd_lora"))

    ev = sub.add_parser("evaluate", help="evaluation of a model").add_subparsers(dest="action", required=True)
    s = ev.add_parser("math", help="greedy exact match on the seed's test split and the robustness sets")
    for a in ("--checkpoint", "--instances", "--splits", "--settings", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--robustness", nargs="*", default=[], metavar="NAME=PATH",
                   help="instances of a robustness set (GSM-P1/P2), tested on splits.test instances per template")
    s.add_argument("--update", help="the update.json of the model: if it chose the base model, reuse --reuse")
    s.add_argument("--reuse", help="the original model's math.parquet")
    s.add_argument("--greedy", help="the original model's greedy traces: its test rows when generated in the "
                                    "evaluation dtype (update.eval_dtype == generation.dtype)")
    s.set_defaults(func=_stage("cli_eval", "cmd_evaluate_math"))
    s = ev.add_parser("general", help="general abilities through lm-evaluation-harness (offline, vendored data)")
    for a in ("--checkpoint", "--settings", "--out"):
        s.add_argument(a, required=True)
    s.add_argument("--update", help="the update.json of the model: if it chose the base model, reuse --reuse")
    s.add_argument("--reuse", help="the original model's general.parquet")
    s.set_defaults(func=_stage("cli_eval", "cmd_evaluate_general"))

    s = sub.add_parser("table", help="results/<model>/table.csv (and report.md) from the run artifacts")
    s.add_argument("--results", required=True, help="results/<model>")
    s.add_argument("--model", required=True)
    s.add_argument("--settings", required=True, help="JSON: the model's full settings")
    s.add_argument("--out", required=True)
    s.add_argument("--report")
    s.set_defaults(func=_stage("cli_eval", "cmd_table"))

    s = sub.add_parser("config", help="validate config.yaml and show each model's settings")
    s.add_argument("--config", default="config.yaml")
    s.add_argument("--model")
    s.set_defaults(func=_cmd_config)

    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CCAError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except PermissionError as e:
        print(f"error: cannot write {e.filename}: permission denied; choose a writable results directory",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
