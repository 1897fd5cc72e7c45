"""Scaling out: the memory arithmetic and the resources each rule group asks for."""
import copy

import pytest

from cca.config import ROOT, load_config, model_settings
from cca.scaling import (ARCHITECTURES, GIB, default_gpus, default_resources, rule_resources, rule_threads,
                         stage_memory)


@pytest.fixture(scope="module")
def paper():
    return model_settings(load_config(ROOT / "config.yaml"), "gemma-2-2b")


def settings_of(paper, model, **top):
    return {**copy.deepcopy(paper), "model": model, **top}


# --- the memory arithmetic ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,billions", [("gemma-2-2b", 2.61), ("gemma-2-9b", 9.24), ("olmo-2-7b", 7.30),
                                            ("olmo-2-13b", 13.7), ("gemma-3-270m", 0.268)])
def test_parameter_counts_match_the_published_sizes(model, billions):
    assert ARCHITECTURES[model].parameters / 1e9 == pytest.approx(billions, rel=0.01)


def test_kv_cache_of_a_4k_sequence():
    # 2 (K, V) x layers x KV heads x head_dim x 2 bytes x 4096 tokens
    assert ARCHITECTURES["gemma-2-2b"].kv_bytes_per_token(2) * 4096 == 2 * 26 * 4 * 256 * 2 * 4096
    assert ARCHITECTURES["olmo-2-13b"].kv_bytes_per_token(2) * 4096 / GIB == pytest.approx(3.125)


def test_update_memory_adds_gradients_only_without_mask(paper):
    a = ARCHITECTURES["olmo-2-13b"]
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
    assert default_resources("update", s)["mem_mb"] * 2**20 > 4 * ARCHITECTURES["olmo-2-13b"].parameters * 4
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
