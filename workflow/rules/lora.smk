# The LoRA baseline (PEFT) on CCA's training instances (cca/cli/lora.py).
from cca.cli.lora import LoRASettings


rule lora_baseline:
    input:
        unpack(sweep_inputs("lora")),
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        instances=f"{RESULTS}/{{model}}/instances/main.parquet",
        splits=seed_data("splits/seed{seed}.parquet"),
        accuracy=seed_data("seed{seed}/base_accuracy.parquet"),
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
    output:
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/lora/update.json",
        curve=f"{RESULTS}/{{model}}/seed{{seed}}/lora/curve.parquet",
        figure=f"{RESULTS}/{{model}}/seed{{seed}}/lora/curve.png",
        adapter=directory(f"{RESULTS}/{{model}}/seed{{seed}}/lora/adapter"),
        merged=directory(f"{RESULTS}/{{model}}/seed{{seed}}/lora/merged"),
    params:
        settings=stage_params(LoRASettings),
        sweep=sweep_flags,
    threads: group_threads("lora")
    resources:
        **group_resources("lora"),
    log:
        log_path("lora_seed{seed}"),
    benchmark:
        bench_path("lora_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} lora --checkpoint {input.checkpoint} --instances {input.instances} --splits {input.splits}"
        " --accuracy {input.accuracy} --greedy {input.greedy} --seed {wildcards.seed} {params.sweep}"
        " --settings {params.settings} --out {output.summary} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
