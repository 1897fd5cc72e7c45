"""``cca evaluate`` (workflow/rules/evaluation.smk): math accuracy on the test split and the robustness sets,
general abilities through lm-evaluation-harness."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths, chosen_base, named_paths, torch_threads
from cca.errors import CCAError
from cca.evaluate.config import GeneralConfig
from cca.settings import Settings, placement
from cca.tasks.config import TaskConfig
from cca.traces.config import GenerationConfig


@dataclass(frozen=True)
class MathEvalSettings(Settings):
    generation: GenerationConfig    # evaluation generates with it, in eval_dtype
    eval_dtype: str                 # update.eval_dtype
    test_per_template: int          # splits.test: test instances per template, of each robustness set too
    task: TaskConfig
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "MathEvalSettings":
        return cls.from_dict({"generation": s["generation"], "eval_dtype": s["update"]["eval_dtype"],
                              "test_per_template": s["splits"]["test"], "task": s["task_config"],
                              "device_map": placement(s, s["generation"]["backend"] == "hf")})


@dataclass(frozen=True)
class GeneralEvalSettings(Settings):
    general: GeneralConfig | None   # seeds, configurations and bootstrap_iters None: they pick which models
    #                                 are evaluated and how the table reads them, not what one evaluation is
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "GeneralEvalSettings":
        g = s.get("general")
        if g is not None:
            g = {**g, "seeds": None, "configurations": None, "bootstrap_iters": None}
        return cls.from_dict({"general": g, "device_map": placement(s, True)})


def evaluate_math(args) -> None:
    import time
    from pathlib import Path

    import pandas as pd

    from cca.config import ROOT
    from cca.evaluate.math_accuracy import evaluation_instances, math_summary
    from cca.io import read_parquet, write_json, write_parquet
    from cca.update.validation import traces_match_validation

    st = MathEvalSettings.from_json(args.settings)
    t0 = time.perf_counter()
    if args.reuse and chosen_base(args.update):
        # Greedy decoding of the same weights with the same engine settings: the original model's rows.
        df = read_parquet(args.reuse)
        source = f"reused: {args.update} chose the base model, so this is {args.reuse}"
    else:
        from cca.traces.build import greedy_traces, prompt_texts, tokenize_prompts
        from cca.traces.generation import open_backend

        per_template = st.test_per_template
        sets = {"test": evaluation_instances(read_parquet(args.instances), read_parquet(args.splits), per_template)}
        for name, path in named_paths(args.robustness, "--robustness").items():
            sets[name] = evaluation_instances(read_parquet(path), None, per_template)
        empty = [k for k, v in sets.items() if v.empty]
        if empty:
            raise CCAError(f"no test instances in set(s) {empty}: check splits.test in config.yaml")
        gen = st.generation.replace(dtype=st.eval_dtype)
        frames, sources = [], []
        if args.greedy and traces_match_validation(st.generation, st.eval_dtype):
            # The original model's greedy traces, generated in this dtype with these limits, hold its test
            # split's completions already.
            greedy = read_parquet(args.greedy).set_index("instance_id")
            ids = list(sets.pop("test")["instance_id"])
            missing = [i for i in ids if i not in greedy.index]
            if missing:
                raise CCAError(f"{args.greedy} lacks test instances {missing[:3]}...: re-run greedy_traces")
            frames.append(greedy.loc[ids].reset_index().assign(set="test"))
            sources.append(f"test from {args.greedy}")
        if sets:
            backend = open_backend(args.checkpoint, gen, seed=0, device_map=st.device_map)
            for name, inst in sets.items():
                prompts = tokenize_prompts(backend.tokenizer, prompt_texts(inst, st.task, ROOT))
                rows = greedy_traces(backend, inst, prompts, gen.max_new_tokens, backend.max_len)
                frames.append(rows.assign(set=name))
            sources.append(f"{', '.join(sets)} generated from {args.checkpoint} ({gen.backend}, {gen.dtype})")
        df = pd.concat(frames, ignore_index=True)[
            ["set", "instance_id", "template_id", "answer_value", "prediction", "correct", "completion_ids",
             "completion_text", "finish_reason", "error"]]
        source = "; ".join(sources)
    summary = {"sets": math_summary(df), "source": source, "seconds": round(time.perf_counter() - t0, 1)}
    write_json(summary, Path(args.out).with_suffix(".json"))
    write_parquet(df, args.out)   # last: the rule's main output marks completion
    print(", ".join(f"{k} {v['template_mean']:.3f} (n {v['n']})" for k, v in summary["sets"].items())
          + f"; {source} -> {args.out}")


def evaluate_general(args) -> None:
    import shutil
    import time
    from pathlib import Path

    from cca.config import ROOT
    from cca.io import atomic_file, read_parquet, write_parquet

    st = GeneralEvalSettings.from_json(args.settings)
    g = st.general
    if g is None:
        raise CCAError("the model's profile has no general section: add general.questions to config.yaml")
    t0 = time.perf_counter()
    if args.reuse and chosen_base(args.update):
        df = read_parquet(args.reuse)
        with atomic_file(args.out) as tmp:
            shutil.copyfile(args.reuse, tmp)
        source = f"reused: {args.update} chose the base model"
    else:
        from cca.evaluate.general import evaluate, task_configs
        from cca.models.registry import load_model

        torch_threads()
        data_dir = Path(g.data_dir)
        data_dir = data_dir if data_dir.is_absolute() else ROOT / data_dir
        configs = task_configs(data_dir, g.questions, seed=g.subsample_seed, triviaqa_shots=g.triviaqa_shots)
        model, tokenizer = load_model(args.checkpoint, dtype="float32", device_map=st.device_map)
        df = evaluate(model, tokenizer, configs, batch_size=g.batch_size)
        write_parquet(df, args.out)
        source = f"lm-evaluation-harness on {args.checkpoint}"
    means = df.groupby("benchmark", sort=False)["score"].agg(["mean", "size"])
    print(", ".join(f"{b} {100 * r['mean']:.1f} (n {int(r['size'])})" for b, r in means.iterrows())
          + f"; {source}, {time.perf_counter() - t0:.0f}s -> {args.out}")


def register(sub) -> None:
    ev = sub.add_parser("evaluate", help="evaluation of a model").add_subparsers(dest="action", required=True)
    s = ev.add_parser("math", help="greedy exact match on the seed's test split and the robustness sets")
    add_paths(s, "--checkpoint", "--instances", "--splits", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.evaluation.MathEvalSettings")
    s.add_argument("--robustness", nargs="*", default=[], metavar="NAME=PATH",
                   help="instances of a robustness set (GSM-P1/P2), tested on splits.test instances per template")
    s.add_argument("--update", help="the update.json of the model: if it chose the base model, reuse --reuse")
    s.add_argument("--reuse", help="the original model's math.parquet")
    s.add_argument("--greedy", help="the original model's greedy traces: its test rows when generated in the "
                                    "evaluation dtype (update.eval_dtype == generation.dtype)")
    s.set_defaults(run=evaluate_math)
    s = ev.add_parser("general", help="general abilities through lm-evaluation-harness (offline, vendored data)")
    add_paths(s, "--checkpoint", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.evaluation.GeneralEvalSettings")
    s.add_argument("--update", help="the update.json of the model: if it chose the base model, reuse --reuse")
    s.add_argument("--reuse", help="the original model's general.parquet")
    s.set_defaults(run=evaluate_general)
