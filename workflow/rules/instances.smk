# Templates (or a JSONL file of records) -> instances -> per-seed train/val/test splits.


rule instances:
    input:
        template_inputs,
    output:
        f"{RESULTS}/{{model}}/instances/{{template_set}}.parquet",
    params:
        templates=template_dir,
        flags=template_set_flags,
        n=lambda w: settings(w)["instances"]["per_template"],
        seed=lambda w: settings(w)["instances"]["seed"],
    threads: group_threads("data")
    resources:
        **group_resources("data"),
    conda:
        ENV
    log:
        log_path("instances_{template_set}"),
    benchmark:
        bench_path("instances_{template_set}")
    shell:
        "{CCA} instances generate --templates {params.templates} --n {params.n} --seed {params.seed}"
        " {params.flags} --out {output} 2> {log} || {{ tail -n 3 {log} >&2; exit 1; }}"


# A task of records (tasks.<task>.records) instead of templates: the same table (cca.tasks.records)
rule record_instances:
    input:
        records_input,
    output:
        f"{RESULTS}/{{model}}/instances/{{template_set}}.parquet",
    params:
        name=lambda w: settings(w)["task_config"].get("set_name") or Path(records_input(w)).stem,
        n=lambda w: settings(w)["instances"]["per_template"],
        seed=lambda w: settings(w)["instances"]["seed"],
    threads: group_threads("data")
    resources:
        **group_resources("data"),
    conda:
        ENV
    log:
        log_path("instances_{template_set}"),
    benchmark:
        bench_path("instances_{template_set}")
    shell:
        "{CCA} instances records --records {input} --name {params.name} --n {params.n} --seed {params.seed}"
        " --out {output} 2> {log} || {{ tail -n 3 {log} >&2; exit 1; }}"


rule splits:
    input:
        f"{RESULTS}/{{model}}/instances/main.parquet",
    output:
        f"{RESULTS}/{{model}}/splits/seed{{seed}}.parquet",
    params:
        # fixed order: reordering keys in config.yaml must not re-run anything
        sizes=lambda w: " ".join(f"--{k} {settings(w)['splits'][k]}" for k in ("train", "val", "test")),
    threads: group_threads("data")
    resources:
        **group_resources("data"),
    conda:
        ENV
    log:
        log_path("splits_seed{seed}"),
    benchmark:
        bench_path("splits_seed{seed}")
    shell:
        "{CCA} splits --instances {input} --seed {wildcards.seed} {params.sizes} --out {output}"
        " 2> {log} || {{ tail -n 3 {log} >&2; exit 1; }}"
