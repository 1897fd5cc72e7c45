# Stage 3: the updates, one rule per variant of cca.layout.VARIANTS (cca/cli/update.py): the targeted update
# of the selected components (w/ mask), of all parameters (w/o mask), and the controls: the targeted update
# over a random mask as large as the w/ mask update's chosen one (random_mask, then random_update), and the
# all-parameter update with the embedding / LM head and the norms frozen (body_update).
from cca.cli.update import UpdateSettings
from cca.layout import RANDOM_MASK_SOURCE, VARIANTS


def dcm_masks(wildcards):
    base = f"{RESULTS}/{wildcards.model}/seed{wildcards.seed}/{wildcards.method}"
    return [f"{base}/masks/lambda{lam}.safetensors" for lam in lambdas(wildcards)]


def random_mask_path(model, seed, method):
    return f"{RESULTS}/{model}/seed{seed}/{method}/random/mask.safetensors"


def update_inputs(variant):
    def get(wildcards):
        inputs = {
            "checkpoint": f"{RESULTS}/{wildcards.model}/checkpoint",
            "dataset": seed_data("seed{seed}/error_localization_{method}.parquet")(wildcards),
            "greedy": f"{RESULTS}/{wildcards.model}/traces/greedy.parquet",
            "splits": seed_data("splits/seed{seed}.parquet")(wildcards),
        }
        inputs.update(sweep_inputs(f"{{method}}/{variant.name}")(wildcards))
        if variant.mask == "dcm":
            inputs["masks"] = dcm_masks(wildcards)
        elif variant.mask == "random":
            inputs["masks"] = [random_mask_path(wildcards.model, wildcards.seed, wildcards.method)]
        return inputs

    return get


def update_outputs(variant):
    base = f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/{variant.name}"
    out = {
        "summary": f"{base}/update.json",
        "curve": f"{base}/curve.parquet",
        "figure": f"{base}/curve.png",
        "merged": directory(f"{base}/merged"),
    }
    if variant.mask:
        out["delta"] = f"{base}/delta.safetensors"
    return out


def joined_masks(wildcards, input):
    return " ".join(input.masks)


UPDATE_SHELL = (
    "{CCA} update --variant {params.variant} --checkpoint {input.checkpoint} --dataset {input.dataset}"
    " --greedy {input.greedy} --splits {input.splits} --masks {params.masks} --seed {wildcards.seed} {params.sweep}"
    " --settings {params.settings} --out {output.summary} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
)


for _variant in VARIANTS.values():

    rule:
        name:
            _variant.rule
        input:
            unpack(update_inputs(_variant)),
        output:
            **update_outputs(_variant),
        params:
            settings=stage_params(UpdateSettings),
            masks=joined_masks if _variant.mask else "",
            variant=_variant.name,
            sweep=sweep_flags,
        threads: group_threads("update")
        resources:
            # the memory arithmetic (cca.models.scaling) knows row deltas ("mask") and whole weights ("nomask")
            **group_resources("update", "mask" if _variant.mask else "nomask"),
        log:
            log_path(f"update_{{method}}_{_variant.name}_seed{{seed}}"),
        benchmark:
            bench_path(f"update_{{method}}_{_variant.name}_seed{{seed}}")
        conda:
            ENV
        shell:
            UPDATE_SHELL


_source = f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/{RANDOM_MASK_SOURCE}"


rule random_mask:
    input:
        summary=f"{_source}/update.json",
        curve=f"{_source}/curve.parquet",
        masks=dcm_masks,
    output:
        random_mask_path("{model}", "{seed}", "{method}"),
    threads: group_threads("data")
    resources:
        **group_resources("data"),
    log:
        log_path("random_mask_{method}_seed{seed}"),
    benchmark:
        bench_path("random_mask_{method}_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} random-mask --summary {input.summary} --curve {input.curve} --masks {input.masks}"
        " --seed {wildcards.seed} --out {output} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
