# The results table and report of a model (cca/cli/table.py).
from cca.cli.table import TableSettings
from cca.layout import configurations, general_configurations, run_dir


def table_inputs(wildcards):
    """What `cca table` reads: every configuration's math.json and math.parquet (+ update.json) per seed, and
    general.parquet for the general-evaluation seeds (the same layout functions the command uses)."""
    base = f"{RESULTS}/{wildcards.model}"
    st = TableSettings.from_model(settings(wildcards))
    out = []
    for seed in st.seeds:
        for conf in configurations(st.localization.methods, st.controls):
            out += [f"{base}/{run_dir(conf, seed)}/math.json", f"{base}/{run_dir(conf, seed)}/math.parquet"]
            if conf != "original":
                out.append(f"{base}/{run_dir(conf, seed)}/update.json")
    for seed in st.general_seeds():
        out += [f"{base}/{run_dir(conf, seed)}/general.parquet"
                for conf in general_configurations(st.localization.methods, st.controls, st.general.configurations)]
    return out


rule table:
    input:
        table_inputs,
    output:
        table=f"{RESULTS}/{{model}}/table.csv",
        report=f"{RESULTS}/{{model}}/report.md",
        sweep=f"{RESULTS}/{{model}}/lambda_sweep.parquet",
        sweep_figure=f"{RESULTS}/{{model}}/lambda_sweep.png",
    params:
        settings=stage_params(TableSettings),
        results=lambda w: f"{RESULTS}/{w.model}",
    threads: group_threads("table")
    resources:
        **group_resources("table"),
    log:
        log_path("table"),
    conda:
        ENV
    shell:
        "{CCA} table --results {params.results} --model {wildcards.model} --settings {params.settings}"
        " --out {output.table} --report {output.report} 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
