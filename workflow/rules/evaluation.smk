# Evaluation of every configuration (cca/cli/evaluation.py).
#
# Every configuration of a seed has a folder: seed{S}/original, seed{S}/{method}/{variant}, seed{S}/lora.
# Each gets math.parquet (+ math.json) and, for the seeds in general.seeds, general.parquet. An update
# whose validation chose the base model reuses the original's evaluation (same weights, greedy).
from cca.cli.evaluation import GeneralEvalSettings, MathEvalSettings


wildcard_constraints:
    run=f"({'|'.join(METHODS)})/({'|'.join(VARIANTS)})|lora",


def robustness_instances(wildcards):
    names = settings(wildcards)["task_config"]["robustness"]
    return {n: f"{RESULTS}/{wildcards.model}/instances/{n}.parquet" for n in names}


def robustness_flag(wildcards, input):
    pairs = [f"{n}={input[n]}" for n in robustness_instances(wildcards)]
    return ("--robustness " + " ".join(pairs)) if pairs else ""


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
        splits=seed_data("splits/seed{seed}.parquet"),
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
    output:
        table=f"{RESULTS}/{{model}}/seed{{seed}}/original/math.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/original/math.json",
    params:
        settings=stage_params(MathEvalSettings),
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
        splits=seed_data("splits/seed{seed}.parquet"),
    output:
        table=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/math.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/{{run}}/math.json",
    params:
        settings=stage_params(MathEvalSettings),
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
        settings=stage_params(GeneralEvalSettings),
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
        settings=stage_params(GeneralEvalSettings),
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
