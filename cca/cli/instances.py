"""``cca instances`` and ``cca splits`` (workflow/rules/instances.smk): templates -> instances -> per-seed splits."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cca.cli.common import read_table
from cca.errors import CCAError


def load_templates(directory: str, name: str | None = None, check: bool = True, perturbed: bool = False):
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


def generate_instances(args) -> None:
    import pandas as pd
    from tqdm import tqdm

    from cca.io import write_parquet
    from cca.templates import UNDRAWABLE_UPSTREAM, draw_instances, instances_frame

    templates = load_templates(args.templates, args.name, check=not args.no_check, perturbed=args.perturbed)
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


def record_instances(args) -> None:
    from cca.io import write_parquet
    from cca.tasks.records import read_records, records_frame

    df = records_frame(read_records(args.records), args.name, args.n, args.seed, source=str(args.records))
    write_parquet(df, args.out)
    print(f"{len(df)} instances of {df['template_id'].nunique()} record group(s) of {args.records} -> {args.out}")


def verify_instances(args) -> None:
    from cca.templates import verify_instance

    df = read_table(args.instances)
    missing = {"template_id", "question", "answer", "variables"} - set(df.columns)
    if missing:
        raise CCAError(f"{args.instances} lacks the columns {sorted(missing)}")
    templates = {t.template_id.split("/")[-1]: t for t in load_templates(args.templates, check=False)}
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


def splits(args) -> None:
    from cca.io import read_parquet, write_parquet
    from cca.tasks.splits import split_instances

    df = split_instances(read_parquet(args.instances), args.seed, args.train, args.val, args.test)
    write_parquet(df, args.out)
    counts = df["split"].value_counts().to_dict()
    print(f"seed {args.seed}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test"))
          + f" -> {args.out}")


def register(sub) -> None:
    inst = sub.add_parser("instances", help="GSM-Symbolic-style instances").add_subparsers(dest="action",
                                                                                              required=True)
    s = inst.add_parser("generate", help="draw N instances per template to Parquet")
    s.add_argument("--templates", required=True, help="template directory")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--name", help="template set name used in template ids (default: the directory name)")
    s.add_argument("--perturbed", action="store_true",
                   help="GSM-P1/P2-style set: check defaults for self-consistency, not against the stored question")
    s.add_argument("--no-check", action="store_true", help="skip the default-values check of every template")
    s.set_defaults(run=generate_instances)
    s = inst.add_parser("records", help="draw N records per group of a JSONL task file to Parquet")
    s.add_argument("--records", required=True, help="JSONL file of {question, answer} records")
    s.add_argument("--name", required=True, help="set name used in template ids")
    s.add_argument("--n", type=int, required=True, help="records per group (instances.per_template)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(run=record_instances)
    s = inst.add_parser("verify", help="check instances (Parquet or JSONL) against their templates")
    s.add_argument("instances")
    s.add_argument("--templates", required=True)
    s.set_defaults(run=verify_instances)

    s = sub.add_parser("splits", help="per-template train/val/test split for one seed")
    s.add_argument("--instances", required=True)
    s.add_argument("--seed", type=int, required=True)
    for name in ("train", "val", "test"):
        s.add_argument(f"--{name}", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(run=splits)
