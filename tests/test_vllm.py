"""The vLLM backend against the Hugging Face backend on a tiny model, through the `cca traces` command."""
import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from cca.config import ROOT
from cca.models import prepare_model
from cca.templates import draw_instances, instances_frame, load_template_set

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed")


def test_vllm_greedy_traces_match_hf(tmp_path):
    prepare_model("tiny-llama", tmp_path / "ckpt")
    templates = load_template_set(ROOT / "resources/gsm-mini/templates", "gsm-mini")[:6]
    instances_frame([i for t in templates for i in draw_instances(t, 1, 0)]).to_parquet(tmp_path / "inst.parquet")
    task = {"exemplars": {"file": "resources/gsm-mini/exemplars.jsonl", "indices": [0, 1]}, "header": ""}
    tables = {}
    for backend in ("vllm", "hf"):
        settings = {"generation": {"backend": backend, "dtype": "float32", "max_new_tokens": 16,
                                   "max_model_len": 1024}, "task": task}
        out = tmp_path / f"{backend}.parquet"
        proc = subprocess.run([sys.executable, "-m", "cca.cli", "traces", "greedy", "--checkpoint", tmp_path / "ckpt",
                               "--instances", tmp_path / "inst.parquet", "--settings", json.dumps(settings),
                               "--out", out], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        tables[backend] = pd.read_parquet(out)
    v, h = tables["vllm"], tables["hf"]
    assert list(v.instance_id) == list(h.instance_id)
    assert [list(x) for x in v.prompt_ids] == [list(x) for x in h.prompt_ids]
    assert [list(x) for x in v.completion_ids] == [list(x) for x in h.completion_ids]
