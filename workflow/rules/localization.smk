# Stage 1b: pivotal-token localization into Error-Localization datasets, one per method (cca/cli/localization.py).
from cca.cli.localization import LocalizeSettings


def localization_group(wildcards):
    """A method whose search generates is a model job; one that reads traces only is a data job."""
    return "localization" if METHODS[wildcards.method].generates else "data"


rule error_localization:
    input:
        checkpoint=f"{RESULTS}/{{model}}/checkpoint",
        greedy=f"{RESULTS}/{{model}}/traces/greedy.parquet",
        opposite=f"{RESULTS}/{{model}}/seed{{seed}}/opposite_traces.parquet",
    output:
        dataset=f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.parquet",
        summary=f"{RESULTS}/{{model}}/seed{{seed}}/error_localization_{{method}}.summary.json",
    params:
        settings=stage_params(LocalizeSettings),
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
