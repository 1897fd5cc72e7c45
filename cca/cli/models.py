"""``cca prepare-model`` (workflow/rules/models.smk): a registered model prepared into a checkpoint folder."""
from __future__ import annotations


def prepare_model(args) -> None:
    from cca.models.registry import prepare_model as prepare

    record = prepare(args.model, args.out, path=args.path, repo_id=args.repo_id, seed=args.seed)
    print(f"prepared {args.model}: {record['architecture']}, {record['num_layers']} layers, "
          f"{record['num_heads']} heads ({record['num_kv_heads']} KV), d_ff {record['intermediate_size']} "
          f"-> {args.out}")


def register(sub) -> None:
    s = sub.add_parser("prepare-model", help="prepare a registered model into a checkpoint directory")
    s.add_argument("model")
    s.add_argument("--out", required=True)
    s.add_argument("--path", help="hub models: a local Hugging Face checkpoint directory to use instead")
    s.add_argument("--repo-id", help="hub models: a hub id other than the registry's")
    s.add_argument("--seed", type=int, default=0, help="initialisation seed of tiny models")
    s.set_defaults(run=prepare_model)
