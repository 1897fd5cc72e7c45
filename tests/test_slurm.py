"""A real Slurm cluster: tests/tools/slurm_cluster.sh stands up a one-node cluster on this machine (munge,
slurmctld, slurmd from Debian's packages, installed on demand), and a small table of the trained tiny model is
built through workflow/profiles/slurm, its account and partition filled in for that cluster, and beside it on
this machine without Slurm, from the model the cluster prepared. The table and every other artifact are the
same, and each job asked Slurm for its rule group's CPUs, memory and time limit (read back with
`scontrol show job`: the cluster has no slurmdbd, so no sacct).

Where the packages cannot be installed or the cluster does not start, the tests are skipped with the script's
reason (`pytest -ra` prints it)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cca.config import ROOT, load_config, model_settings
from cca.layout import VARIANTS
from cca.localize.methods import METHODS
from cca.models.scaling import ONE_THREAD, GROUPS, rule_resources, rule_threads

pytestmark = pytest.mark.slurm

SCRIPT = ROOT / "tests" / "tools" / "slurm_cluster.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
TINY = Path(__file__).parent / "data" / "config_tiny.yaml"
MODEL = "tiny-gsm"
TARGET = f"results/{MODEL}/table.csv"
ACCOUNT = "cca-test"
# the rules call `python -m cca.cli` and the Snakefile imports cca: both must see this checkout
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
RUN_TIMEOUT = 2400   # seconds for the two runs together

# Each rule's group (workflow/rules/*.smk); the update rules and error_localization are resolved per job below.
RULE_GROUP = {"prepare_model": "prepare", "instances": "data", "splits": "data", "base_accuracy": "data",
              "random_mask": "data", "greedy_traces": "generation", "opposite_traces": "generation",
              "dcm_mask": "dcm", "lora_baseline": "lora", "evaluate_original_math": "evaluation",
              "evaluate_math": "evaluation", "evaluate_original_general": "general", "evaluate_general": "general",
              "table": "table", **{v.rule: "update" for v in VARIANTS.values()}}
# The jobs of the target under the configuration below: every rule group once at least.
EXPECTED_JOBS = {"prepare_model": 1, "instances": 1, "splits": 1, "greedy_traces": 1, "base_accuracy": 1,
                 "opposite_traces": 1, "error_localization": 1, "dcm_mask": 1, "targeted_update": 1, "full_update": 1,
                 "lora_baseline": 1, "evaluate_original_math": 1, "evaluate_math": 3, "evaluate_original_general": 1,
                 "table": 1}


def small_config(model_cpus: int) -> dict:
    """The tiny configuration cut to one model, one seed, the branching method (a model job, unlike prefix), one
    lambda, no controls, the general evaluation of the original only; model jobs take ``model_cpus`` CPUs (the
    cluster default, 8, is more than a test node has) and the table job asks for less than its default."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["models"] = {MODEL: cfg["models"][MODEL]}
    tiny = cfg["profiles"]["tiny"]
    tiny["localization"]["methods"] = ["branching"]
    tiny["controls"] = []
    tiny["dcm"]["lambdas"] = [1.0e-2]
    tiny["general"]["configurations"] = ["original"]
    tiny["resources"] = {**{g: {"cpus": model_cpus} for g in GROUPS if g not in ONE_THREAD},
                         "table": {"mem_mb": 2048, "runtime": 15}}
    return cfg


def slurm_profile(partition: str) -> dict:
    """workflow/profiles/slurm with this cluster's account and partition, and the plugin's settings for a cluster
    without slurmdbd (job status from squeue, which sees finished jobs for the cluster's MinJobAge)."""
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"] = [*profile["default-resources"], f"slurm_account={ACCOUNT}",
                                    f"slurm_partition={partition}"]
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 2,
                    "slurm-logdir": "slurm-logs", "slurm-keep-successful-logs": True})
    return profile


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node cluster: the key=value lines of `slurm_cluster.sh start`; stopped afterwards."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the Slurm executor plugin is not installed "
                        "(make install installs it)")
    directory = tmp_path_factory.mktemp("slurm") / "cluster"
    proc = subprocess.run([str(SCRIPT), "start", str(directory)], capture_output=True, text=True, timeout=900)
    try:
        if proc.returncode in (3, 4):
            pytest.skip(f"no Slurm cluster (slurm_cluster.sh exit {proc.returncode}): {proc.stdout.strip()}")
        assert proc.returncode == 0, f"slurm_cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}"
        info = dict(line.split("=", 1) for line in proc.stdout.splitlines() if re.match(r"^\w+=", line))
        yield info
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, text=True, timeout=300)


def client_env(cluster) -> dict:
    """The environment of Snakemake and its jobs on the test cluster: its Slurm commands first on PATH (the
    plugin's job step drops SLURM_CONF before it calls srun; the wrappers set it again)."""
    return {**ENV, "SLURM_CONF": cluster["SLURM_CONF"], "PATH": os.pathsep.join([cluster["bin"], ENV["PATH"]])}


def start(workdir: Path, args: list[str], env: dict) -> subprocess.Popen:
    with open(workdir / "snakemake.log", "w") as log:
        return subprocess.Popen([*SNAKEMAKE, *args], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def finish(proc: subprocess.Popen, workdir: Path, deadline: float) -> None:
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    log = (workdir / "snakemake.log").read_text()
    assert proc.returncode == 0, f"snakemake in {workdir} exited {proc.returncode}:\n{log[-4000:]}"


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The same configuration built on the cluster and, beside it, locally (--cores 2): (local, slurm) dirs."""
    cpus, mem = int(cluster["cpus"]), int(cluster["mem_mb"])
    model_cpus = min(2, cpus)
    local, slurm = (tmp_path_factory.mktemp(name) for name in ("local", "slurm"))
    for d in (local, slurm):
        (d / "config.yaml").write_text(yaml.safe_dump(small_config(model_cpus)))
    settings = model_settings(load_config(local / "config.yaml"), MODEL)
    largest = max(rule_resources(g, settings)["mem_mb"] for g in GROUPS)
    if largest > mem:
        pytest.skip(f"the test node has {mem} MB and the largest job asks for {largest} MB")
    (slurm / "profile").mkdir()
    (slurm / "profile" / "config.yaml").write_text(yaml.safe_dump(slurm_profile(cluster["partition"])))
    started = time.monotonic()
    deadline = started + RUN_TIMEOUT
    running = [start(slurm, ["--profile", str(slurm / "profile"), TARGET], client_env(cluster))]
    try:
        # Training the tiny model is the longest job: the local run starts from the checkpoint that the cluster's
        # prepare_model job wrote, once Snakemake has seen that job finish, and runs everything after it itself.
        checkpoint = Path("results") / MODEL / "checkpoint"
        while "(Rule: prepare_model)" not in (slurm / "snakemake.log").read_text():
            if running[0].poll() is not None or time.monotonic() > deadline:
                finish(running[0], slurm, deadline)
                raise AssertionError(f"the Slurm run ended without preparing the model:\n"
                                     f"{(slurm / 'snakemake.log').read_text()[-4000:]}")
            time.sleep(2)
        shutil.copytree(slurm / checkpoint, local / checkpoint)
        running.append(start(local, ["--cores", "2", TARGET], ENV))
        finish(running[1], local, deadline)
        finish(running[0], slurm, deadline)
    finally:
        for proc in running:   # a run left behind by a failure above
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    print(f"the Slurm run, and the local run beside it from the prepared model: {time.monotonic() - started:.0f} s")
    return local, slurm


def slurm_jobs(cluster) -> list[dict]:
    """Every job the cluster knows (finished ones stay for its MinJobAge), as scontrol's key=value fields."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, timeout=60,
                         env=client_env(cluster), check=True).stdout
    return [dict(tok.split("=", 1) for tok in line.split() if "=" in tok) for line in out.splitlines() if line]


def megabytes(text: str) -> int:
    """Slurm's memory field (e.g. 8G, 4096M) in its MB (MiB), the unit of --mem and mem_mb."""
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", text).groups()
    return round(float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit])


def minutes(text: str) -> int:
    """Slurm's time limit ([days-]hours:minutes:seconds) in minutes, the unit of runtime and -t."""
    days, _, clock = text.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def gpus(tres: str) -> int:
    """The GPUs in a job's TRES list (cpu=2,mem=8G,node=1,gres/gpu=1,...); 0 without any."""
    found = re.search(r"(?:^|,)gres/gpu=(\d+)", tres)
    return int(found.group(1)) if found else 0


def group_of(rule: str, wildcard_values: list[str]) -> tuple[str, str]:
    """(rule group, memory variant) of a job, as workflow/rules/ assigns them."""
    if rule == "error_localization":   # model, seed, method
        return ("localization" if METHODS[wildcard_values[-1]].generates else "data"), "nomask"
    variant = next((v for v in VARIANTS.values() if v.rule == rule), None)
    return RULE_GROUP[rule], ("mask" if variant and variant.mask else "nomask")


def rule_of(comment: str) -> tuple[str, list[str]]:
    """The rule and wildcard values of the plugin's job comment: rule_<rule>[_wildcards_<v1>_<v2>...]."""
    for rule in sorted([*RULE_GROUP, "error_localization"], key=len, reverse=True):
        if comment == f"rule_{rule}":
            return rule, []
        if comment.startswith(f"rule_{rule}_wildcards_"):
            return rule, comment.removeprefix(f"rule_{rule}_wildcards_").split("_")
    raise AssertionError(f"a Slurm job whose comment names no rule of the workflow: {comment!r}")


def test_the_table_and_every_artifact_equal_a_local_runs(runs):
    local, slurm = runs
    assert "rule prepare_model:" not in (local / "snakemake.log").read_text()   # the cluster's checkpoint
    assert (slurm / TARGET).read_bytes() == (local / TARGET).read_bytes()
    sys.path.insert(0, str(ROOT / "tests" / "tools"))
    try:
        from artifact_digest import digests
    finally:
        sys.path.remove(str(ROOT / "tests" / "tools"))
    here, there = digests(local / "results"), digests(slurm / "results")
    assert len(here) > 30 and here == there


def test_each_job_asked_slurm_for_its_groups_resources(runs, cluster):
    _, slurm = runs
    settings = model_settings(load_config(slurm / "config.yaml"), MODEL)
    jobs = slurm_jobs(cluster)
    counts = {}
    for job in jobs:
        rule, values = rule_of(job["Comment"])
        counts[rule] = counts.get(rule, 0) + 1
        group, variant = group_of(rule, values)
        wanted = rule_resources(group, settings, variant)
        asked = {"cpus": int(job["CPUs/Task"]), "mem_mb": megabytes(job["MinMemoryNode"]),
                 "runtime": minutes(job["TimeLimit"]), "gpu": gpus(job.get("TRES", ""))}
        assert asked == {"cpus": rule_threads(group, settings, cores=None), "mem_mb": wanted["mem_mb"],
                         "runtime": wanted["runtime"], "gpu": wanted["gpu"]}, (job["JobId"], job["Comment"])
        assert (job["Partition"], job["Account"], job["JobState"]) == (cluster["partition"], ACCOUNT, "COMPLETED")
    assert counts == EXPECTED_JOBS
    # what the groups ask for differs between them, so a job given another group's resources would show
    by_rule = {rule_of(j["Comment"])[0]: j for j in jobs}
    assert by_rule["table"]["MinMemoryNode"] == "2G" and by_rule["table"]["TimeLimit"] == "00:15:00"
    assert by_rule["splits"]["CPUs/Task"] == "1"
    assert int(by_rule["dcm_mask"]["CPUs/Task"]) == min(2, int(cluster["cpus"]))
    assert minutes(by_rule["targeted_update"]["TimeLimit"]) == 1440 and minutes(by_rule["splits"]["TimeLimit"]) == 30
