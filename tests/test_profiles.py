"""Scaling out: the memory arithmetic, the resources each rule asks for, the Snakemake profiles, and the
settings that place a model on GPUs (vLLM tensor parallelism, a Hugging Face device_map).

The dry runs plan the tiny configuration; nothing is built and no engine or real model is started."""
import copy
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from dry_run import planned_jobs

from cca.config import ROOT, load_config, model_settings, validate_config
from cca.errors import CCAError
from cca.models.scaling import (GIB, GROUPS, default_gpus, default_resources, model_size, rule_resources, rule_threads,
                                stage_memory)

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
TINY = Path(__file__).parent / "data" / "config_tiny.yaml"
PROFILES = ROOT / "workflow" / "profiles"
# the rules call `python -m cca.cli` and the Snakefile imports cca: both must see this checkout
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def paper():
    return model_settings(load_config(ROOT / "config.yaml"), "gemma-2-2b")


def settings_of(paper, model, **top):
    return {**copy.deepcopy(paper), "model": model, **top}


# --- the memory arithmetic ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,billions", [("gemma-2-2b", 2.61), ("gemma-2-9b", 9.24), ("olmo-2-7b", 7.30),
                                            ("olmo-2-13b", 13.7), ("gemma-3-270m", 0.268)])
def test_parameter_counts_match_the_published_sizes(model, billions):
    assert model_size(model).parameters / 1e9 == pytest.approx(billions, rel=0.01)


def test_kv_cache_of_a_4k_sequence():
    # 2 (K, V) x layers x KV heads x head_dim x 2 bytes x 4096 tokens
    assert model_size("gemma-2-2b").kv_bytes_per_token(2) * 4096 == 2 * 26 * 4 * 256 * 2 * 4096
    assert model_size("olmo-2-13b").kv_bytes_per_token(2) * 4096 / GIB == pytest.approx(3.125)


def test_update_memory_adds_gradients_only_without_mask(paper):
    a = model_size("olmo-2-13b")
    s = settings_of(paper, "olmo-2-13b")
    mask, nomask = stage_memory(a, "update", s, "mask"), stage_memory(a, "update", s, "nomask")
    assert mask["weights"] == nomask["weights"] == a.parameters * 4   # the update loads fp32
    assert "gradients" not in mask and nomask["gradients"] == a.parameters * 4
    smaller = settings_of(paper, "olmo-2-13b")
    smaller["update"]["micro_batch"] = 1
    assert stage_memory(a, "update", smaller)["activations"] < nomask["activations"]


def test_which_sizes_need_more_than_one_card(paper):
    on_gpus = lambda m: settings_of(paper, m, device_map="auto")  # noqa: E731
    # generation (bf16) and DCM (fp32, no gradients) fit one 80 GB card for every model
    for model in ("gemma-2-2b", "gemma-2-9b", "olmo-2-7b", "olmo-2-13b"):
        assert default_gpus("generation", on_gpus(model)) == 1
        assert default_gpus("dcm", on_gpus(model)) == 1
    # the update keeps one card for the validation engine and spreads the model over the others
    assert default_gpus("update", on_gpus("gemma-2-2b"), "nomask") == 2
    assert default_gpus("update", on_gpus("gemma-2-9b"), "nomask") == 4
    assert default_gpus("update", on_gpus("olmo-2-13b"), "nomask") == 4
    assert default_gpus("update", on_gpus("olmo-2-7b"), "mask") == 3


def test_without_device_map_the_hugging_face_side_stays_on_the_cpu(paper):
    s = settings_of(paper, "olmo-2-13b")
    assert default_gpus("dcm", s) == 0 and default_gpus("general", s) == 0
    assert default_gpus("update", s) == 1          # the vLLM validation engine only
    # ... and the host then holds what the GPUs would: fp32 weights and gradients, plus the two host copies
    assert default_resources("update", s)["mem_mb"] * 2**20 > 4 * model_size("olmo-2-13b").parameters * 4
    hf = settings_of(paper, "olmo-2-13b")
    hf["generation"]["backend"] = "hf"
    assert default_gpus("update", hf) == 0 and default_gpus("generation", hf) == 0


def test_small_jobs_ask_for_no_gpu_and_one_thread(paper):
    s = settings_of(paper, "olmo-2-13b", device_map="auto")
    for group in ("data", "table", "prepare"):
        assert default_resources(group, s)["gpu"] == 0
    assert rule_threads("table", s, cores=16) == 1 and rule_threads("data", s, cores=None) == 1
    assert rule_threads("dcm", s, cores=16) == 16      # a local run: every core
    assert rule_threads("dcm", s, cores=None) == 8     # a cluster run without --cores


def test_config_replaces_the_defaults(paper):
    s = settings_of(paper, "gemma-2-9b")
    s["generation"]["tensor_parallel_size"] = 2
    s["resources"] = {"update": {"gpu": 6, "runtime": 90, "cpus": 3}}
    assert rule_resources("generation", s)["gpu"] == 2
    assert rule_resources("update", s) == {"gpu": 6, "mem_mb": default_resources("update", s)["mem_mb"],
                                           "runtime": 90}
    assert rule_threads("update", s, cores=64) == 3
    assert set(default_resources("table", s)) == {"gpu", "mem_mb", "runtime"}
    with pytest.raises(ValueError, match="unknown rule group"):
        default_resources("tables", s)


def test_the_schema_lists_every_rule_group():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert set(schema["$defs"]["profile"]["properties"]["resources"]["properties"]) == set(GROUPS)


# --- dry runs: the profiles and the resources each rule asks for ---------------------------------------------------

def snakemake(workdir, *args):
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "-n", *args], capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def asked(jobs, rule, model="tiny-llama", **wildcards):
    """The resources of the first planned job of ``rule`` for ``model`` (and the given wildcards)."""
    for job in jobs:
        w = job["wildcards"]
        if job["rule"] == rule and w.get("model") == model and all(w.get(k) == v for k, v in wildcards.items()):
            return job["resources"]
    raise AssertionError(f"no planned job of rule {rule} for {model} {wildcards}")


def workdir_with(tmp_path, mutate=None):
    cfg = yaml.safe_load(TINY.read_text())
    if mutate:
        mutate(cfg)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profiles_name_only_snakemake_options(profile):
    from snakemake.cli import get_argument_parser

    options = {s for action in get_argument_parser()._actions for s in action.option_strings}
    keys = yaml.safe_load((PROFILES / profile / "config.yaml").read_text())
    assert keys and not [k for k in keys if f"--{k}" not in options]


def test_local_profile_plans_the_whole_dag_with_each_groups_resources(tmp_path):
    jobs = planned_jobs(snakemake(workdir_with(tmp_path), "--profile", str(PROFILES / "local"),
                                  "results/tiny-llama/table.csv"))
    assert len(jobs) == 74
    assert all({"gpu", "mem_mb", "runtime"} <= set(j["resources"]) for j in jobs)
    # the tiny profile generates with Hugging Face on the CPU: no rule asks for a GPU
    assert {j["resources"]["gpu"] for j in jobs} == {"0"}
    assert asked(jobs, "table")["runtime"] == "30"
    assert asked(jobs, "targeted_update")["runtime"] == "1440"


def test_resources_follow_the_config(tmp_path):
    def mutate(cfg):
        cfg["profiles"]["tiny"]["generation"].update(backend="vllm", tensor_parallel_size=2)
        cfg["profiles"]["tiny"]["resources"] = {"generation": {"mem_mb": 12345, "runtime": 77},
                                                "table": {"mem_mb": 2048}}
        cfg["models"]["tiny-llama"]["device_map"] = "auto"

    out = snakemake(workdir_with(tmp_path, mutate), "--profile", str(PROFILES / "local"),
                    "results/tiny-llama/table.csv", "results/tiny-gsm/table.csv")
    jobs = planned_jobs(out)
    assert {k: asked(jobs, "greedy_traces")[k] for k in ("gpu", "mem_mb", "runtime")} == \
        {"gpu": "2", "mem_mb": "12345", "runtime": "77"}
    assert asked(jobs, "opposite_traces", model="tiny-gsm")["gpu"] == "2"
    assert asked(jobs, "error_localization", method="branching")["gpu"] == "2"
    assert asked(jobs, "error_localization", method="prefix")["gpu"] == "0"   # reads traces only
    assert asked(jobs, "table")["gpu"] == "0" and asked(jobs, "table")["mem_mb"] == "2048"
    # tiny-llama has a device_map: its Hugging Face stages go to GPUs (the update keeps 2 for vLLM)
    assert asked(jobs, "dcm_mask")["gpu"] == "1"
    assert asked(jobs, "targeted_update")["gpu"] == "3"
    assert asked(jobs, "dcm_mask", model="tiny-gsm")["gpu"] == "0"       # no device_map: on the CPU
    assert asked(jobs, "full_update", model="tiny-gsm")["gpu"] == "2"    # the validation engine only
    # the device_map enters the settings of tiny-llama's Hugging Face stages, not those of tiny-gsm
    dcm = [line for line in out.splitlines() if line.startswith("Shell command:") and " dcm " in line]
    assert {"results/tiny-gsm/" in line for line in dcm} == {True, False}
    assert all(('"device_map": "auto"' in line) == ("results/tiny-llama/" in line) for line in dcm)
    greedy = [line for line in out.splitlines() if line.startswith("Shell command:") and "traces greedy" in line
              and "results/tiny-llama/" in line]
    assert greedy and '"device_map": "auto"' not in greedy[0]   # vLLM generation does not load the model with Hugging Face


def test_slurm_profile_plans_the_whole_dag(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    jobs = planned_jobs(snakemake(workdir_with(tmp_path), "--profile", str(PROFILES / "slurm"),
                                  "results/tiny-llama/table.csv"))
    assert len(jobs) == 74
    assert asked(jobs, "targeted_update")["runtime"] == "1440" and asked(jobs, "table")["gpu"] == "0"


# --- placing the model: vLLM tensor parallelism, a Hugging Face device_map ----------------------------------------

@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in for vLLM that records the engine's arguments (no engine starts)."""
    calls = []

    class LLM:
        def __init__(self, **kwargs):
            calls.append(kwargs)
            config = types.SimpleNamespace(hf_config=types.SimpleNamespace(eos_token_id=1))
            self.llm_engine = types.SimpleNamespace(model_config=config)

        def get_tokenizer(self):
            return types.SimpleNamespace(eos_token_id=2)

    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, platforms=platforms))
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return calls


def generation_config(**values):
    """Generation settings: these values, the schema's defaults for the rest."""
    from cca.config import profile_section
    from cca.traces.config import GenerationConfig

    return GenerationConfig.from_dict(profile_section("generation", values))


def test_tensor_parallel_size_reaches_the_vllm_engine(fake_vllm, tmp_path):
    from cca.traces.generation import open_backend

    (tmp_path / "config.json").write_text("{}")
    gen = generation_config(backend="vllm", dtype="bfloat16", max_new_tokens=8, max_model_len=512)
    open_backend(tmp_path, gen, seed=0)
    open_backend(tmp_path, gen.replace(tensor_parallel_size=4), seed=0)
    assert "tensor_parallel_size" not in fake_vllm[0]     # absent: the engine's arguments as before
    assert fake_vllm[1]["tensor_parallel_size"] == 4


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from cca.models.registry import prepare_model

    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    prepare_model("tiny-llama", path)
    return path


def test_device_map_reaches_from_pretrained(tiny_checkpoint, monkeypatch):
    import transformers

    from cca.models.registry import input_device, load_model

    real = transformers.AutoModelForCausalLM.from_pretrained
    seen = []

    def recording(path, **kwargs):
        seen.append(kwargs)
        return real(path, dtype=kwargs["dtype"])   # on the CPU: this machine has no GPU to spread over

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    model, _ = load_model(tiny_checkpoint, device_map="auto")
    assert seen[-1]["device_map"] == "auto" and seen[-1]["max_memory"] is None
    load_model(tiny_checkpoint)
    assert "device_map" not in seen[-1]
    assert str(input_device(model)) == "cpu"


def test_update_leaves_the_validation_engines_gpus_free(tiny_checkpoint, monkeypatch):
    import cca.models.registry
    from cca.update.validation import load_trained_model

    seen = []
    monkeypatch.setattr(cca.models.registry, "load_model", lambda path, **kwargs: seen.append(kwargs))
    gen = generation_config(backend="vllm", max_new_tokens=8, tensor_parallel_size=2)
    load_trained_model(tiny_checkpoint, gen, "auto")
    load_trained_model(tiny_checkpoint, gen.replace(backend="hf"), None)
    assert seen == [{"dtype": "float32", "device_map": "auto", "skip_gpus": 2},
                    {"dtype": "float32", "device_map": None, "skip_gpus": 0}]


def test_no_gpu_left_for_the_model_is_a_clear_error(tiny_checkpoint, monkeypatch):
    import torch

    from cca.models.registry import load_model

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(CCAError, match="sees 1 GPU.*validation engine takes 1"):
        load_model(tiny_checkpoint, device_map="auto", skip_gpus=1)


def test_device_map_is_one_of_accelerates_strategies():
    cfg = load_config(TINY)
    assert model_settings(cfg, "tiny-llama")["device_map"] is None
    cfg["models"]["tiny-llama"]["device_map"] = "everywhere"
    with pytest.raises(CCAError, match="device_map"):
        validate_config(cfg)


# --- memory on a local run -----------------------------------------------------------------------------------------

def test_local_runs_are_limited_to_the_machines_memory(tmp_path):
    from cca.models.scaling import machine_memory_mb

    line = f"jobs running together ask for at most mem_mb={machine_memory_mb()}"
    assert line in snakemake(workdir_with(tmp_path), "--cores", "2", "results/tiny-llama/table.csv")
    # a limit given on the command line (or by a profile) is the run's own
    assert "ask for at most" not in snakemake(workdir_with(tmp_path), "results/tiny-llama/table.csv", "--cores", "2",
                                              "--resources", "mem_mb=4000")


def test_two_jobs_that_do_not_fit_together_run_one_after_the_other(tmp_path):
    """Two one-thread jobs (the instances of two models) on two cores, each declaring 60% of the machine's memory: the scheduler starts the
    second only after the first has finished; with room for both (a limit given by hand) they run together."""
    from cca.models.scaling import machine_memory_mb

    def mutate(cfg):
        cfg["profiles"]["tiny"]["resources"] = {"data": {"mem_mb": int(machine_memory_mb() * 0.6)}}

    def run(workdir, *args):
        proc = subprocess.run([*SNAKEMAKE, "results/tiny-llama/instances/main.parquet",
                               "results/tiny-gsm/instances/main.parquet",
                               "--directory", str(workdir), "--cores", "2", *args],
                              capture_output=True, text=True, timeout=600, env=ENV)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Snakemake logs "rule instances:" when it starts a job and "Finished jobid" when one ends
        events = [ln for ln in proc.stderr.splitlines()
                  if ln.startswith(("rule instances", "localrule instances", "Finished job"))]
        return ["start" if e.endswith("instances:") else "end" for e in events]

    for name in ("limited", "room"):
        (tmp_path / name).mkdir()
    assert run(workdir_with(tmp_path / "limited", mutate)) == ["start", "end", "start", "end"]
    both = run(workdir_with(tmp_path / "room", mutate), "--resources", f"mem_mb={2 * machine_memory_mb()}")
    assert both[:2] == ["start", "start"]
