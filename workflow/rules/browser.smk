# The run browser of a model's first seed: a static HTML page of its Error-Localization pairs, chosen masks,
# their components' direct contributions and delta norms, and validation curves (cca/cli/browser.py).


def browser_inputs(wildcards):
    base = f"{RESULTS}/{wildcards.model}"
    seed = seeds(wildcards)[0]
    inputs = {"checkpoint": f"{base}/checkpoint", "greedy": f"{base}/traces/greedy.parquet"}
    for method in methods(wildcards):
        inputs[f"dataset_{method}"] = f"{base}/seed{seed}/error_localization_{method}.parquet"
        inputs[f"update_{method}"] = f"{base}/seed{seed}/{method}/mask/update.json"
        inputs[f"masks_{method}"] = [f"{base}/seed{seed}/{method}/masks/lambda{lam}.safetensors"
                                     for lam in lambdas(wildcards)]
    return inputs


def browser_flags(wildcards, input):
    ms = methods(wildcards)
    return (" --dataset " + " ".join(f"{m}={input[f'dataset_{m}']}" for m in ms)
            + " --update " + " ".join(f"{m}={input[f'update_{m}']}" for m in ms)
            + " --masks " + " ".join(f"{m}={','.join(input[f'masks_{m}'])}" for m in ms))


rule browser:
    input:
        unpack(browser_inputs),
    output:
        page=f"{RESULTS}/{{model}}/browser/index.html",
        components=f"{RESULTS}/{{model}}/browser/components.parquet",
    params:
        flags=browser_flags,
        seed=lambda w: seeds(w)[0],
        search=lambda w: settings(w)["localization"]["branching_search"],
    threads: group_threads("dcm")
    resources:
        # one float32 forward per pair, as a DCM job's
        **group_resources("dcm"),
    log:
        log_path("browser"),
    benchmark:
        bench_path("browser")
    conda:
        ENV
    shell:
        "{CCA} browser --checkpoint {input.checkpoint} --greedy {input.greedy} --model {wildcards.model}"
        " --seed {params.seed} --search {params.search}{params.flags} --out {output.page}"
        " 2> {log} || {{ tail -n 5 {log} >&2; exit 1; }}"
