"""``cca traces`` (workflow/rules/generation.smk): greedy traces, base accuracy, sampled opposite traces."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths, shard_fingerprint
from cca.settings import Settings, placement
from cca.tasks.config import TaskConfig
from cca.traces.config import GenerationConfig, SamplingConfig, TemplateFilterConfig


@dataclass(frozen=True)
class GreedyTracesSettings(Settings):
    generation: GenerationConfig
    task: TaskConfig
    device_map: str | None          # the hf backend's placement (None: the CPU)

    @classmethod
    def from_model(cls, s: dict) -> "GreedyTracesSettings":
        return cls.from_dict({"generation": s["generation"], "task": s["task_config"],
                              "device_map": placement(s, s["generation"]["backend"] == "hf")})


@dataclass(frozen=True)
class BaseAccuracySettings(Settings):
    template_filter: TemplateFilterConfig

    @classmethod
    def from_model(cls, s: dict) -> "BaseAccuracySettings":
        return cls.from_dict({"template_filter": s["template_filter"]})


@dataclass(frozen=True)
class OppositeTracesSettings(Settings):
    generation: GenerationConfig
    sampling: SamplingConfig
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "OppositeTracesSettings":
        return cls.from_dict({"generation": s["generation"], "sampling": s["sampling"],
                              "device_map": placement(s, s["generation"]["backend"] == "hf")})


def greedy(args) -> None:
    from cca.config import ROOT
    from cca.io import read_parquet, write_sharded
    from cca.traces.build import greedy_traces, prompt_texts, tokenize_prompts
    from cca.traces.generation import open_backend

    st = GreedyTracesSettings.from_json(args.settings)
    instances = read_parquet(args.instances)
    backend = open_backend(args.checkpoint, st.generation, seed=0, device_map=st.device_map)
    prompts = tokenize_prompts(backend.tokenizer, prompt_texts(instances, st.task, ROOT))
    instances = instances.assign(_prompt=prompts)

    def work(chunk):
        return greedy_traces(backend, chunk, list(chunk["_prompt"]), st.generation.max_new_tokens, backend.max_len)

    fingerprint = shard_fingerprint(st.to_dict(), args.checkpoint, [args.instances])
    df = write_sharded(instances, args.shard_size, args.out, fingerprint, work, desc="greedy traces")
    print(f"greedy: {int(df['correct'].sum())}/{len(df)} correct ({df['correct'].mean():.3f}), "
          f"{int(df['error'].notna().sum())} errors -> {args.out}")


def accuracy(args) -> None:
    from cca.io import read_parquet, write_parquet
    from cca.traces.build import base_accuracy

    tf = BaseAccuracySettings.from_json(args.settings).template_filter
    acc = base_accuracy(read_parquet(args.greedy), read_parquet(args.splits), tf.instances, tf.max_base_accuracy)
    write_parquet(acc, args.out)
    print(f"{int(acc['train_eligible'].sum())} of {len(acc)} templates below accuracy {tf.max_base_accuracy} "
          f"on {tf.instances} instances (mean per-template accuracy {acc['accuracy'].mean():.3f}) -> {args.out}")


def opposite(args) -> None:
    from cca.io import read_parquet, write_sharded
    from cca.traces.build import opposite_traces
    from cca.traces.generation import open_backend

    st = OppositeTracesSettings.from_json(args.settings)
    gen, smp = st.generation, st.sampling
    greedy_rows = read_parquet(args.greedy)
    acc = read_parquet(args.accuracy)
    split = read_parquet(args.splits)
    eligible = set(acc.loc[acc["train_eligible"], "template_id"])
    targets = split[(split["split"] == "train") & split["template_id"].isin(eligible)]
    backend = open_backend(args.checkpoint, gen, seed=args.seed, device_map=st.device_map)
    max_new_tokens = smp.max_new_tokens if smp.max_new_tokens is not None else gen.max_new_tokens

    def work(chunk):
        return opposite_traces(backend, greedy_rows, chunk, smp.num_samples, smp.temperature, smp.top_p,
                               max_new_tokens, round_size=smp.round_size, seed=args.seed)

    # shards drawn under another seeding rule (one stream per engine) are never mixed with these
    fingerprint = shard_fingerprint({**st.to_dict(), "sample_seeds": "per (seed, instance, index)"},
                                    args.checkpoint, [args.greedy, args.accuracy, args.splits], args.seed)
    df = write_sharded(targets, args.shard_size, args.out, fingerprint, work, desc="opposite traces")
    print(f"seed {args.seed}: {int(df['found'].sum())} of {len(df)} train instances have an opposite trace "
          f"(templates below threshold: {len(eligible)}) -> {args.out}")


def register(sub) -> None:
    tr = sub.add_parser("traces", help="greedy and sampled traces").add_subparsers(dest="action", required=True)
    s = tr.add_parser("greedy", help="greedy traces of every instance")
    add_paths(s, "--checkpoint", "--instances", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.generation.GreedyTracesSettings")
    s.add_argument("--shard-size", type=int, default=64, help="instances per resumable shard")
    s.set_defaults(run=greedy)
    s = tr.add_parser("accuracy", help="per-template base accuracy on a seed's split and the training filter")
    add_paths(s, "--greedy", "--splits", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.generation.BaseAccuracySettings")
    s.set_defaults(run=accuracy)
    s = tr.add_parser("opposite", help="sampled traces of opposite correctness for the train split")
    add_paths(s, "--checkpoint", "--greedy", "--accuracy", "--splits", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.generation.OppositeTracesSettings")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--shard-size", type=int, default=64, help="instances per resumable shard")
    s.set_defaults(run=opposite)
