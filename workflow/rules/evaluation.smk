# Evaluation, the LoRA baseline, and the results table.
#
# Every configuration of a seed has a folder: seed{S}/original, seed{S}/{method}/{variant}, seed{S}/lora.
# Each gets math.parquet (+ math.json) and, for the seeds in general.seeds, general.parquet. An update
# whose validation chose the base model reuses the original's evaluation (same weights, greedy).


wildcard_constraints:
    run=r"(prefix|branching)/(mask|nomask)|lora",


def robustness_instances(wildcards):
    names = settings(wildcards)["task_config"].get("robustness", {})
    return {n: f"{RESULTS}/{wildcards.model}/instances/{n}.parquet" for n in names}


def robustness_flag(wildcards, input):
    pairs = [f"{n}={input[n]}" for n in robustness_instances(wildcards)]
    return ("--robustness " + " ".join(pairs)) if pairs else ""


def eval_settings(wildcards):
    s = settings(wildcards)
    picked = {"generation": s["generation"], "update": {"eval_dtype": s["update"].get("eval_dtype", "float32")},
              "splits": s["splits"], "task": s["task_config"], **placement(s, s["generation"]["backend"] == "hf")}
    return shlex.quote(json.dumps(picked, sort_keys=True))


def lora_settings(wildcards):
    """What the LoRA baseline depends on: its own section, generation and validation dtype, the task."""
    s = settings(wildcards)
    picked = {"lora": s["lora"], "generation": s["generation"], "task": s["task_config"],
              "update": {"eval_dtype": s["update"].get("eval_dtype", "float32")}, **placement(s, True)}
    return shlex.quote(json.dumps(picked, sort_keys=True))


def general_settings(wildcards):
    """What one general evaluation depends on: not which seeds or configurations get one, nor the table's
    bootstrap (changing those re-runs no evaluation)."""
    s = settings(wildcards)
    g = {k: v for k, v in (s.get("general") or {}).items() if k not in ("seeds", "configurations", "bootstrap_iters")}
    return shlex.quote(json.dumps({"general": g, **placement(s, True)}, sort_keys=True))


MATH_SHELL = (
    "{CCA} evaluate math --checkpoint {input.checkpoint} --instances {input.instances} --splits {input.splits}"
    " {params.robustness} --settings {params.settings} --out {output.table} {params.reuse}"
    " 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
)


rule evaluate_original_math:
    input:
        unpack(robustness_instances),
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
    output:
        table=f"{RESULTS}/{{model}}/seed{{seed}}/original/math.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/original/math.json",
    params:
        settings=eval_settings,
        robustness=robustness_flag,
        # the greedy traces hold the test split's completions when generated in the evaluation dtype
        reuse=lambda w, input: f"--greedy {input.greedy}",
    threads: group_threads("evaluation")
    resources:
        **group_resources("evaluation"),
    log:
        log_path("math_original_seed{seed}"),
    benchmark:
        bench_path("math_original_seed{seed}")
    conda:
        ENV
    shell:
        MATH_SHELL


rule evaluate_math:
    input:
        unpack(robustness_instances),
        checkpoint=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/merged",
        run_summary=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/update.json",
        original=f"{RESULTS}/{{model}}/seed{{seed}}/original/math.parquet",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
    output:
        table=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/math.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/math.json",
    params:
        settings=eval_settings,
        robustness=robustness_flag,
        reuse=lambda w, input: f"--update {input.run_summary} --reuse {input.original}",
    threads: group_threads("evaluation")
    resources:
        **group_resources("evaluation"),
    log:
        log_path("math_{run}_seed{seed}"),
    benchmark:
        bench_path("math_{run}_seed{seed}")
    conda:
        ENV
    shell:
        MATH_SHELL


rule evaluate_original_general:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/original/general.parquet",
    params:
        settings=general_settings,
    threads: group_threads("general")
    resources:
        **group_resources("general"),
    log:
        log_path("general_original_seed{seed}"),
    benchmark:
        bench_path("general_original_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} evaluate general --checkpoint {input.checkpoint} --settings {params.settings} --out {output}"
        " 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"


rule evaluate_general:
    input:
        checkpoint=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/merged",
        run_summary=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/update.json",
        original=f"{RESULTS}/{{model}}/seed{{seed}}/original/general.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/general.parquet",
    params:
        settings=general_settings,
    threads: group_threads("general")
    resources:
        **group_resources("general"),
    log:
        log_path("general_{run}_seed{seed}"),
    benchmark:
        bench_path("general_{run}_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} evaluate general --checkpoint {input.checkpoint} --settings {params.settings} --out {output}"
        " --update {input.run_summary} --reuse {input.original} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"


rule lora_baseline:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
        accuracy=f"{RESULTS}/{{model}}/traces/base_accuracy.parquet",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
    output:
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/lora/update.json",
        curve=f"{RESULTS}/{{model}}/seed{{seed}}/lora/curve.parquet",
        figure=f"{RESULTS}/{{model}}/seed{{seed}}/lora/curve.png",
        adapter=directory(f"{RESULTS}/{{model}}/seed{{seed}}/lora/adapter"),
        merged=directory(f"{RESULTS}/{{model}}/seed{{seed}}/lora/merged"),
    params:
        settings=lora_settings,
    threads: group_threads("lora")
    resources:
        **group_resources("lora"),
    log:
        log_path("lora_seed{seed}"),
    benchmark:
        bench_path("lora_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} lora --checkpoint {input.checkpoint} --instances {input.instances} --splits {input.splits}"
        " --accuracy {input.accuracy} --greedy {input.greedy} --seed {wildcards.seed}"
        " --settings {params.settings} --out {output.summary} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"


def table_inputs(wildcards):
    """What `cca table` reads: every configuration's math.json and math.parquet (+ update.json) per seed, and
    general.parquet for the general-evaluation seeds (the same layout functions the command uses)."""
    from cca.cli_eval import configurations, general_configurations, general_seeds, run_dir

    base = f"{RESULTS}/{wildcards.model}"
    s = settings(wildcards)
    confs = configurations(methods(wildcards))
    out = []
    for seed in seeds(wildcards):
        for conf in confs:
            out += [f"{base}/{run_dir(conf, seed)}/math.json", f"{base}/{run_dir(conf, seed)}/math.parquet"]
            if conf != "original":
                out.append(f"{base}/{run_dir(conf, seed)}/update.json")
    for seed in general_seeds(s):
        out += [f"{base}/{run_dir(conf, seed)}/general.parquet" for conf in general_configurations(s)]
    return out


def table_settings(wildcards):
    s = settings(wildcards)
    picked = {k: s.get(k) for k in ("profile", "task", "seeds", "localization", "general")}
    return shlex.quote(json.dumps(picked, sort_keys=True))


rule table:
    input:
        table_inputs,
    output:
        table=f"{RESULTS}/{{model}}/table.csv",
        report=f"{RESULTS}/{{model}}/report.md",
    params:
        settings=table_settings,
        results=lambda w: f"{RESULTS}/{w.model}",
    threads: group_threads("table")
    resources:
        **group_resources("table"),
    log:
        log_path("table"),
    conda:
        ENV
    shell:
        "{CCA} table --results {params.results} --model {wildcards.model} --settings {params.settings}"
        " --out {output.table} --report {output.report} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
