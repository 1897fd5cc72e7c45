# Shared helpers of the rules: paths, per-model settings, the command that runs the package.
import functools
import json
import shlex
import sys
from pathlib import Path

from cca.config import model_settings
from cca.errors import CCAError
from cca.layout import VARIANTS
from cca.localize.methods import METHODS
from cca.models.scaling import machine_memory_mb, rule_resources, rule_threads
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

ROOT = Path(workflow.basedir).parent
RESULTS = config["results_dir"]   # the schema default is filled by validate()
# The package runs in the interpreter that runs Snakemake (the project's environment), or, under
# --use-conda, in the rule's conda environment with this checkout on its path.
try:
    _USE_CONDA = "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
except AttributeError:
    _USE_CONDA = False
CCA = (f"PYTHONPATH={shlex.quote(str(ROOT))} python -m cca.cli" if _USE_CONDA
       else f"{shlex.quote(sys.executable)} -m cca.cli")
ENV = "../../envs/cca.yaml"
# `snakemake` with no target builds the table of the embedded default when it is configured.
DEFAULT_MODELS = [m for m in ("gemma-3-270m",) if m in config["models"]] or list(config["models"])[:1]


# A local run never starts jobs together whose declared mem_mb add up to more than this machine has (every
# rule declares its peak: cca.models.scaling). --resources mem_mb=N (or a profile's) sets another limit; a
# cluster run (--jobs) leaves memory to the cluster.
if workflow.resource_settings.nodes is None and "mem_mb" not in workflow.global_resources:
    workflow.global_resources["mem_mb"] = _machine_mb = machine_memory_mb()
    logger.info(f"local run: jobs running together ask for at most mem_mb={_machine_mb} (this machine's memory; "
                "--resources mem_mb=N sets another limit)")


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    seed=r"\d+",
    template_set=r"[A-Za-z0-9_-]+",


def settings(wildcards):
    """The settings of the model in `wildcards` (profile + overrides); a clear error if unknown."""
    return settings_of(wildcards.model)


def settings_of(model):
    try:
        return model_settings(config, model)
    except CCAError as e:
        raise WorkflowError(str(e))


def stage_params(settings_class):
    """A rule's ``--settings``: the JSON of its stage's settings object (``settings_class.from_model``), which
    holds just what the stage depends on, so a change re-runs only the rules whose object changed."""

    def get(wildcards):
        return shlex.quote(settings_class.from_model(settings(wildcards)).to_json())

    return get


# once per model: cca.models.scaling reads the settings without changing them
scheduled_settings = functools.cache(settings_of)


@functools.cache
def scheduling(model, group, variant="nomask"):
    """What a job of ``group`` for ``model`` asks for: gpu, mem_mb, runtime and threads."""
    s = scheduled_settings(model)
    return {**rule_resources(group, s, variant), "threads": rule_threads(group, s, workflow.resource_settings.cores)}


def group_resources(group, variant="nomask"):
    """A rule's resources (gpu, mem_mb, runtime) from its group's in cca.models.scaling and the config's
    resources section; ``group`` may be a function of the wildcards."""

    def pick(name):
        def get(wildcards):
            return scheduling(wildcards.model, group(wildcards) if callable(group) else group, variant)[name]

        return get

    return {name: pick(name) for name in ("gpu", "mem_mb", "runtime")}


def group_threads(group):
    """A rule's threads: the config's cpus, else every core of a local run (8 on a cluster) for a model job."""

    def get(wildcards):
        return scheduling(wildcards.model, group(wildcards) if callable(group) else group)["threads"]

    return get


def repo_path(path):
    """Paths in config.yaml are relative to the repository root unless absolute."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def unavailable(wildcards, what):
    """An input no rule makes: the rule that asks for it does not apply, so Snakemake takes the other rule
    that writes the same output (templates or records make a model's instances)."""
    return f"{RESULTS}/{wildcards.model}/.{what} (not configured for this task)"


def template_dir(wildcards):
    task = settings(wildcards)["task_config"]
    if wildcards.template_set == "main":
        return repo_path(task["templates"]) if task.get("templates") else None
    if wildcards.template_set not in task["robustness"]:
        raise WorkflowError(f"task of model {wildcards.model} has no template set '{wildcards.template_set}': "
                            f"use main or one of {sorted(task['robustness'])}")
    return repo_path(task["robustness"][wildcards.template_set])


def template_inputs(wildcards):
    directory = template_dir(wildcards)
    return sorted(directory.glob("*.json")) if directory is not None else [unavailable(wildcards, "templates")]


def records_input(wildcards):
    records = settings(wildcards)["task_config"].get("records")
    if records and wildcards.template_set == "main":
        return repo_path(records)
    return unavailable(wildcards, "records")


def template_set_flags(wildcards):
    """main: ids prefixed by tasks.<task>.set_name; robustness sets are perturbed variants (P1/P2)."""
    if wildcards.template_set == "main":
        name = settings(wildcards)["task_config"].get("set_name")
        return f"--name {name}" if name else ""
    return f"--name {wildcards.template_set} --perturbed"


def seeds(wildcards):
    return settings(wildcards)["seeds"]


def data_seed(wildcards):
    """The seed whose split and stage-1 artifacts (template filter, sampled traces, Error-Localization
    datasets) a seed's training and evaluation read: its own, or the first seed's under ``seed_data: shared``."""
    s = settings(wildcards)
    return s["seeds"][0] if s["seed_data"] == "shared" else int(wildcards.seed)


def sweep_inputs(run):
    """Under ``sweep_seeds: first``, for a seed after the first: the first seed's update.json and curve.parquet
    of ``run`` (a folder under seed<S>/, may hold {method}), whose chosen (lambda, lr) the seed trains; nothing
    for a seed that runs the whole sweep."""

    def get(wildcards):
        s = settings(wildcards)
        first = s["seeds"][0]
        if s["sweep_seeds"] == "all" or int(wildcards.seed) == first:
            return {}
        folder = f"{RESULTS}/{wildcards.model}/seed{first}/" + run.format(method=getattr(wildcards, "method", None))
        return {"sweep": f"{folder}/update.json", "sweep_curve": f"{folder}/curve.parquet"}

    return get


def sweep_flags(wildcards, input):
    return f"--sweep {input.sweep} --sweep-curve {input.sweep_curve}" if "sweep" in input.keys() else ""


def seed_data(pattern):
    """An input function for a stage-1 artifact of the seed's data seed; ``pattern`` is a path under
    results/<model>/ with {seed} (and optionally {method})."""

    def get(wildcards):
        fields = {"seed": data_seed(wildcards), "method": getattr(wildcards, "method", None)}
        return f"{RESULTS}/{wildcards.model}/" + pattern.format(**fields)

    return get


def log_path(name):
    return f"{RESULTS}/{{model}}/logs/{name}.log"


def bench_path(name):
    return f"{RESULTS}/{{model}}/benchmarks/{name}.tsv"


wildcard_constraints:
    method="|".join(METHODS),
    variant="|".join(VARIANTS),


def methods(wildcards):
    return settings(wildcards)["localization"]["methods"]


def lambdas(wildcards):
    return [f"{lam:g}" for lam in settings(wildcards)["dcm"]["lambdas"]]
