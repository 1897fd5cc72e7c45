# Stage 3: the targeted update of the selected components (w/ mask) and of all parameters (w/o mask)
# (cca/cli/update.py).
from cca.cli.update import UpdateSettings


def update_inputs(with_masks):
    def get(wildcards):
        base = f"{RESULTS}/{wildcards.model}/seed{wildcards.seed}"
        inputs = {
            "checkpoint": f"{RESULTS}/{wildcards.model}/checkpoint",
            "dataset": f"{base}/error_localization_{wildcards.method}.parquet",
            "greedy": f"{RESULTS}/{wildcards.model}/traces/greedy.parquet",
            "splits": f"{RESULTS}/{wildcards.model}/splits/seed{wildcards.seed}.parquet",
        }
        if with_masks:
            inputs["masks"] = [f"{base}/{wildcards.method}/masks/lambda{lam}.safetensors" for lam in lambdas(wildcards)]
        return inputs

    return get


def update_outputs(variant):
    base = f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/{variant}"
    out = {
        "summary": f"{base}/update.json",
        "curve": f"{base}/curve.parquet",
        "figure": f"{base}/curve.png",
        "merged": directory(f"{base}/merged"),
    }
    if variant == "mask":
        out["delta"] = f"{base}/delta.safetensors"
    return out


UPDATE_SHELL = (
    "{CCA} update --variant {params.variant} --checkpoint {input.checkpoint} --dataset {input.dataset}"
    " --greedy {input.greedy} --splits {input.splits} --masks {params.masks} --seed {wildcards.seed}"
    " --settings {params.settings} --out {output.summary} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
)


rule targeted_update:
    input:
        unpack(update_inputs(True)),
    output:
        **update_outputs("mask"),
    params:
        settings=stage_params(UpdateSettings),
        masks=lambda wildcards, input: " ".join(input.masks),
        variant="mask",
    threads: group_threads("update")
    resources:
        **group_resources("update", "mask"),
    log:
        log_path("update_{method}_mask_seed{seed}"),
    benchmark:
        bench_path("update_{method}_mask_seed{seed}")
    conda:
        ENV
    shell:
        UPDATE_SHELL


rule full_update:
    input:
        unpack(update_inputs(False)),
    output:
        **update_outputs("nomask"),
    params:
        settings=stage_params(UpdateSettings),
        masks="",
        variant="nomask",
    threads: group_threads("update")
    resources:
        **group_resources("update", "nomask"),
    log:
        log_path("update_{method}_nomask_seed{seed}"),
    benchmark:
        bench_path("update_{method}_nomask_seed{seed}")
    conda:
        ENV
    shell:
        UPDATE_SHELL
