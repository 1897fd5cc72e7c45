# Stage 1b: pivotal-token localization into Error-Localization datasets (prefix and branching methods).


def localization_settings(wildcards):
    """Generation and localization settings; bisect_points only when the search is bisect (it changes
    nothing otherwise, so adding it must not re-run the exact scan)."""
    s = settings(wildcards)
    loc = dict(s["localization"])
    if loc.get("branching_search", "scan") != "bisect":
        loc.pop("bisect_points", None)
    picked = {"generation": s["generation"], "localization": loc, **placement(s, s["generation"]["backend"] == "hf")}
    return shlex.quote(json.dumps(picked, sort_keys=True))


def localization_group(wildcards):
    """The branching search generates (a model job); prefix localization reads traces only."""
    return "localization" if wildcards.method == "branching" else "data"


rule error_localization:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        opposite=f"{RESULTS}/{{model}}/seed{{seed}}/opposite_traces.parquet",
    output:
        dataset=f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.summary.json",
    params:
        settings=localization_settings,
    threads: group_threads(localization_group)  # locally one model at a time: the engine uses every core
    resources:
        **group_resources(localization_group),
    log:
        log_path("error_localization_{method}_seed{seed}"),
    benchmark:
        bench_path("error_localization_{method}_seed{seed}")
    conda:
        ENV
    shell:
        "{CCA} localize --method {wildcards.method} --checkpoint {input.checkpoint} --greedy {input.greedy}"
        " --opposite {input.opposite} --settings {params.settings} --out {output.dataset}"
        " --summary {output.summary} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
