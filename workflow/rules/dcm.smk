# Stage 2: DCM masks over Q/K/V heads and MLP neurons, one per lambda (cca/cli/dcm.py).
from cca.cli.dcm import MaskSettings


rule dcm_mask:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        dataset=seed_data("seed{seed}/error_localization_{method}.parquet"),
    output:
        mask=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.safetensors",
        counts=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.counts.parquet",
        history=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.history.parquet",
        heads=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.heads.png",
        neurons=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.neurons.png",
        selected=f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.selected.png",
    params:
        settings=stage_params(MaskSettings),
    threads: group_threads("dcm")
    resources:
        **group_resources("dcm"),
    log:
        log_path("dcm_{method}_seed{seed}_lambda{lam}"),
    benchmark:
        bench_path("dcm_{method}_seed{seed}_lambda{lam}")
    conda:
        ENV
    shell:
        "{CCA} dcm --checkpoint {input.checkpoint} --dataset {input.dataset} --lam {wildcards.lam}"
        " --seed {wildcards.seed} --settings {params.settings} --out {output.mask}"
        " 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
