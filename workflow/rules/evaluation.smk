# Evaluation, the LoRA baseline, and the results table.


rule lora_baseline:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        splits=f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
        accuracy=f"{RESULTS}/{{model}}/traces/base_accuracy.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/lora/update.json",
    conda:
        ENV
    shell:
        pending("LoRA baseline", ISSUE_EVAL)


def table_inputs(wildcards):
    m = wildcards.model
    out = [f"{RESULTS}/{m}/traces/base_accuracy.parquet"]
    for seed in seeds(wildcards):
        out.append(f"{RESULTS}/{m}/seed{seed}/lora/update.json")
        for method in methods(wildcards):
            out += [f"{RESULTS}/{m}/seed{seed}/{method}/{variant}/update.json" for variant in ("mask", "nomask")]
    robustness = settings(wildcards)["task_config"].get("robustness", {})
    out += [f"{RESULTS}/{m}/instances/{name}.parquet" for name in robustness]
    return out


rule table:
    input:
        table_inputs,
    output:
        f"{RESULTS}/{{model}}/table.csv",
    conda:
        ENV
    shell:
        pending("evaluation and table.csv", ISSUE_EVAL)
