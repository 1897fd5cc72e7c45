"""The vLLM backend against the Hugging Face backend on a tiny model, through the `cca traces` command."""
import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from cca.config import ROOT
from cca.models.registry import prepare_model
from cca.templates import draw_instances, instances_frame, load_template_set

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed")


def test_vllm_greedy_traces_match_hf(tmp_path):
    prepare_model("tiny-llama", tmp_path / "ckpt")
    templates = load_template_set(ROOT / "resources/gsm-mini/templates", "gsm-mini")[:6]
    instances_frame([i for t in templates for i in draw_instances(t, 1, 0)]).to_parquet(tmp_path / "inst.parquet")
    task = {"templates": "resources/gsm-mini/templates", "exemplars": {"file": "resources/gsm-mini/exemplars.jsonl",
                                                                        "indices": [0, 1]}, "header": ""}
    tables = {}
    for backend in ("vllm", "hf"):
        settings = {"generation": {"backend": backend, "dtype": "float32", "max_new_tokens": 16,
                                   "max_model_len": 1024}, "task": task}
        out = tmp_path / f"{backend}.parquet"
        proc = subprocess.run([sys.executable, "-m", "cca.cli", "traces", "greedy", "--checkpoint", tmp_path / "ckpt",
                               "--instances", tmp_path / "inst.parquet", "--settings", json.dumps(settings),
                               "--out", out], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # the engine shuts down without a traceback (older vLLM printed logging errors at exit)
        assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr[-3000:]
        tables[backend] = pd.read_parquet(out)
    v, h = tables["vllm"], tables["hf"]
    assert list(v.instance_id) == list(h.instance_id)
    assert [list(x) for x in v.prompt_ids] == [list(x) for x in h.prompt_ids]
    assert [list(x) for x in v.completion_ids] == [list(x) for x in h.completion_ids]
    # the sampled path on vLLM too (ids read back from Parquet must reach the engine as plain ints)
    def cca(*args):
        proc = subprocess.run([sys.executable, "-m", "cca.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]

    cca("splits", "--instances", tmp_path / "inst.parquet", "--seed", 0, "--train", 1, "--val", 0, "--test", 0,
        "--out", tmp_path / "splits.parquet")
    cca("traces", "accuracy", "--greedy", tmp_path / "vllm.parquet", "--splits", tmp_path / "splits.parquet",
        "--settings", json.dumps({"template_filter": {"max_base_accuracy": 1.01}}), "--out", tmp_path / "acc.parquet")
    settings = {"generation": {"backend": "vllm", "dtype": "float32", "max_new_tokens": 16, "max_model_len": 1024},
                "sampling": {"num_samples": 3, "temperature": 1.0, "max_new_tokens": 16, "round_size": 2}}
    cca("traces", "opposite", "--checkpoint", tmp_path / "ckpt", "--greedy", tmp_path / "vllm.parquet",
        "--accuracy", tmp_path / "acc.parquet", "--splits", tmp_path / "splits.parquet", "--seed", 0,
        "--settings", json.dumps(settings), "--out", tmp_path / "opposite.parquet")
    opp = pd.read_parquet(tmp_path / "opposite.parquet")
    assert len(opp) == len(v) and opp["error"].isna().all()
    assert opp["samples_drawn"].between(1, 3).all()


def test_vllm_reloads_updated_weights_in_place(tmp_path):
    """The update stage's validation path: a running engine takes a merged checkpoint without restarting
    and then generates exactly what Hugging Face generates with the same weights; the merged checkpoint
    itself loads in vLLM."""
    import torch

    from cca.models.components import component_map, update_slices
    from cca.traces.generation import HFBackend, SamplingSpec, VLLMBackend
    from cca.models.registry import checkpoint_path, load_model
    from cca.update.row_delta import attach, merged

    prepare_model("tiny-gsm", tmp_path / "ckpt")
    model, tok = load_model(tmp_path / "ckpt")
    prompts = [tok("Q: Tom has 3 apples and buys 4 more. How many?\nA:")["input_ids"],
               tok("Q: A box holds 12 eggs. How many in 3 boxes?\nA:")["input_ids"]]
    spec = SamplingSpec(max_new_tokens=24)
    base_hf = [o[0].token_ids for o in HFBackend(model, tok).generate(prompts, spec)]
    wrapped = attach(model, update_slices(component_map(model), {"layers.1.mlp": list(range(0, 256, 3)),
                                                                  "layers.0.q": [0, 2]},
                                          ("q", "k", "v", "up")))
    torch.manual_seed(0)
    with torch.no_grad():
        for rd in wrapped.values():
            rd.delta.normal_(0, 0.5)
    new_hf = [o[0].token_ids for o in HFBackend(model, tok).generate(prompts, spec)]
    assert new_hf != base_hf  # the delta changes what the model writes
    with merged(model, wrapped):
        model.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    engine = VLLMBackend(checkpoint_path(tmp_path / "ckpt"), dtype="float32", max_model_len=512)
    try:
        assert [o[0].token_ids for o in engine.generate(prompts, spec)] == base_hf
        engine.reload_weights(tmp_path / "merged")
        assert [o[0].token_ids for o in engine.generate(prompts, spec)] == new_hf
    finally:
        engine.close()


def test_vllm_sampled_traces_are_the_same_after_a_kill_and_with_other_shards(tmp_path):
    """Sample j of instance i is seeded by (run seed, i, j) alone: an opposite-traces job killed after its first
    shard and resumed, with shards of 2 instead of one, writes the table of an uninterrupted run."""
    import os
    import signal
    import time

    prepare_model("tiny-gsm", tmp_path / "ckpt")   # sometimes right: some samples are opposite traces
    templates = load_template_set(ROOT / "resources/gsm-mini/templates", "gsm-mini")[:12]
    instances_frame([i for t in templates for i in draw_instances(t, 1, 0)]).to_parquet(tmp_path / "inst.parquet")
    task = {"templates": "resources/gsm-mini/templates", "exemplars": {"file": "resources/gsm-mini/exemplars.jsonl",
                                                                        "indices": [0, 1]}, "header": ""}

    def cca(*args):
        return [sys.executable, "-m", "cca.cli", *map(str, args)]

    hf = {"backend": "hf", "dtype": "float32", "max_new_tokens": 16, "max_model_len": 1024}
    for args in (("traces", "greedy", "--checkpoint", tmp_path / "ckpt", "--instances", tmp_path / "inst.parquet",
                  "--settings", json.dumps({"generation": hf, "task": task}), "--out", tmp_path / "greedy.parquet"),
                 ("splits", "--instances", tmp_path / "inst.parquet", "--seed", 0, "--train", 1, "--val", 0,
                  "--test", 0, "--out", tmp_path / "splits.parquet"),
                 ("traces", "accuracy", "--greedy", tmp_path / "greedy.parquet", "--splits", tmp_path / "splits.parquet",
                  "--settings", json.dumps({"template_filter": {"max_base_accuracy": 1.01}}),
                  "--out", tmp_path / "acc.parquet")):
        proc = subprocess.run(cca(*args), capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    settings = {"generation": {**hf, "backend": "vllm"},
                "sampling": {"num_samples": 4, "temperature": 1.0, "max_new_tokens": 16, "round_size": 2}}

    def opposite(out, shard_size):
        return cca("traces", "opposite", "--checkpoint", tmp_path / "ckpt", "--greedy", tmp_path / "greedy.parquet",
                   "--accuracy", tmp_path / "acc.parquet", "--splits", tmp_path / "splits.parquet", "--seed", 3,
                   "--settings", json.dumps(settings), "--out", out, "--shard-size", shard_size)

    whole = tmp_path / "whole.parquet"
    proc = subprocess.run(opposite(whole, 64), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = tmp_path / "killed.parquet"
    first_shard = tmp_path / "killed.parquet.parts" / "part-00000.parquet"
    job = subprocess.Popen(opposite(killed, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not first_shard.is_file() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_shard.is_file() and job.poll() is None, "the job ended before its first shard was on disk"
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert not killed.exists()
    proc = subprocess.run(opposite(killed, 2), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = pd.read_parquet(whole), pd.read_parquet(killed)
    assert len(a) == 12 and a["found"].any() and (a["samples_drawn"] > 2).any(), a[["found", "samples_drawn"]]
    pd.testing.assert_frame_equal(a, b)
