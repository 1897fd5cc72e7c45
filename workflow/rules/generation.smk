# Stage 1a: greedy traces, base accuracy and the template filter, sampled opposite traces (cca/cli/generation.py).
from cca.cli.generation import BaseAccuracySettings, GreedyTracesSettings, OppositeTracesSettings


rule greedy_traces:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
    output:
        f"{RESULTS}/{{model}}/traces/greedy.parquet",
    params:
        settings=stage_params(GreedyTracesSettings),
    threads: group_threads("generation")  # locally one model at a time: the engine uses every core
    resources:
        **group_resources("generation"),
    log:
        log_path("greedy_traces"),
    benchmark:
        bench_path("greedy_traces")
    conda:
        ENV
    shell:
        "{CCA} traces greedy --checkpoint {input.checkpoint} --instances {input.instances}"
        " --settings {params.settings} --out {output} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"


# per seed: the filter reads the seed's split (template_filter.instances), not the test answers
rule base_accuracy:
    input:
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/base_accuracy.parquet",
    params:
        settings=stage_params(BaseAccuracySettings),
    threads: group_threads("data")
    resources:
        **group_resources("data"),
    log:
        log_path("base_accuracy_seed{seed}"),
    conda:
        ENV
    shell:
        "{CCA} traces accuracy --greedy {input.greedy} --splits {input.splits} --settings {params.settings}"
        " --out {output} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"


rule opposite_traces:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        accuracy=f"{RESULTS}/{{model}}/seed{{seed}}/base_accuracy.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/opposite_traces.parquet",
    params:
        settings=stage_params(OppositeTracesSettings),
    threads: group_threads("generation")  # locally one model at a time: the engine uses every core
    resources:
        **group_resources("generation"),
    log:
        log_path("opposite_traces_seed{seed}"),
    benchmark:
        bench_path("opposite_traces_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} traces opposite --checkpoint {input.checkpoint} --greedy {input.greedy}"
        " --accuracy {input.accuracy} --splits {input.splits} --seed {wildcards.seed}"
        " --settings {params.settings} --out {output} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
