"""``cca config``: validate config.yaml and show each model's settings."""
from __future__ import annotations


def show_config(args) -> None:
    from cca.config import load_config, model_settings

    config = load_config(args.config)
    models = [args.model] if args.model else list(config["models"])
    for m in models:
        s = model_settings(config, m)
        print(f"{m}: profile {s['profile']}, task {s['task']}, seeds {s['seeds']}, "
              f"lambdas {s['dcm']['lambdas']}, update lrs {s['update']['lrs']}")
    print(f"{args.config}: valid")


def register(sub) -> None:
    s = sub.add_parser("config", help="validate config.yaml and show each model's settings")
    s.add_argument("--config", default="config.yaml")
    s.add_argument("--model")
    s.set_defaults(run=show_config)
