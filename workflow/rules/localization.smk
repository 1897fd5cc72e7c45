# Stage 1b: pivotal-token localization into Error-Localization datasets (prefix and branching methods).


rule error_localization:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        opposite=f"{RESULTS}/{{model}}/seed{{seed}}/opposite_traces.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.parquet",
    conda:
        ENV
    shell:
        pending("error localization", ISSUE_STAGE1)
