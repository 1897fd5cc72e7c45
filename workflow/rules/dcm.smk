# Stage 2: DCM masks over Q/K/V heads and MLP neurons, one per lambda.


rule dcm_mask:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        dataset=f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.parquet",
    output:
        f"{RESULTS}/{{model}}/seed{{seed}}/{{method}}/masks/lambda{{lam}}.safetensors",
    conda:
        ENV
    shell:
        pending("DCM mask training", ISSUE_STAGE23)
