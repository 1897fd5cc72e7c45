# Stage 0: a prepared checkpoint per model (embedded GGUF -> safetensors, hub lookup, or tiny random).


rule prepare_model:
    output:
        directory(f"{RESULTS}/{{model}}/checkpoint"),
    params:
        path=lambda w: f"--path {shlex.quote(settings(w)['path'])}" if settings(w)["path"] else "",
        repo_id=lambda w: f"--repo-id {settings(w)['repo_id']}" if settings(w)["repo_id"] else "",
    conda:
        ENV
    threads: group_threads("prepare")  # locally one model at a time: the engine uses every core
    resources:
        **group_resources("prepare"),
    log:
        log_path("prepare_model"),
    benchmark:
        bench_path("prepare_model")
    shell:
        "{CCA} prepare-model {wildcards.model} --out {output} {params.path} {params.repo_id} 2> {log}"
        " || {{ tail -n 3 {log} >&2; exit 1; }}"
