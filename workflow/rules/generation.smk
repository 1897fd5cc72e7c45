# Stage 1a: greedy traces, base accuracy and the template filter, sampled opposite traces.


rule greedy_traces:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
    output:
        f"{RESULTS}/{{model}}/traces/greedy.parquet",
    conda:
        ENV
    log:
        log_path("greedy_traces"),
    shell:
        pending("greedy trace generation", ISSUE_STAGE1)


rule base_accuracy:
    input:
        f"{RESULTS}/{{model}}/traces/greedy.parquet",
    output:
        f"{RESULTS}/{{model}}/traces/base_accuracy.parquet",
    conda:
        ENV
    shell:
        pending("base accuracy and template filter", ISSUE_STAGE1)


rule opposite_traces:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        accuracy=f"{RESULTS}/{{model}}/traces/base_accuracy.parquet",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/opposite_traces.parquet",
    conda:
        ENV
    shell:
        pending("sampled opposite-correctness traces", ISSUE_STAGE1)
