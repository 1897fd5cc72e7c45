# Stage 3: the targeted update of the selected components (w/ mask) and of all parameters (w/o mask).


def update_inputs(wildcards):
    base = f"{RESULTS}/{wildcards.model}/seed{wildcards.seed}"
    inputs = {
        "checkpoint": f"{RESULTS}/{wildcards.model}/checkpoint",
        "dataset": f"{base}/error_localization_{wildcards.method}.parquet",
        "splits": f"{RESULTS}/{wildcards.model}/splits/seed{wildcards.seed}.parquet",
    }
    if wildcards.variant == "mask":
        inputs["masks"] = [f"{base}/{wildcards.method}/masks/lambda{lam}.safetensors" for lam in lambdas(wildcards)]
    return inputs


rule targeted_update:
    input:
        unpack(update_inputs),
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/{{variant}}/update.json",
    conda:
        ENV
    shell:
        pending("targeted update", ISSUE_STAGE23)
